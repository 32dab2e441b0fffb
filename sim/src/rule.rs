//! The decodability rule the simulator applies: `codes::Code::is_decodable`
//! in every real run; tests pass a broken one to show the checks can fail.
//! A module of its own so that the engine, the cluster and the exposure
//! tables all name it without importing each other.

use codes::Code;

/// A decodability rule: is a stripe of `data` data chunks still decodable
/// with members `lost` gone?
pub type Decodable = dyn Fn(&Code, usize, &[usize]) -> bool + Sync;

/// The real rule.
pub fn real_decodable(code: &Code, data: usize, lost: &[usize]) -> bool {
    code.is_decodable(data, lost)
}
