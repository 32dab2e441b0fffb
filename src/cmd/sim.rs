//! `dfs-sim sim`: how safe is a layout? Runs the durability simulator (the
//! `sim` crate: real placement, decodability and repair planner in
//! simulated time) and prints the answer, a scenario's steps, or a plot.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sim::model::parse_percent;
use sim::{Failures, Layout, Params, RepairModel, Summary};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Layout file (TOML: nodes, domains, spares, parity, replication, ha,
    /// capacity, fill, chunk); replaces the layout flags.
    #[arg(long, value_name = "FILE")]
    pub layout: Option<PathBuf>,
    /// Nodes (drives), spares included.
    #[arg(long, default_value_t = 484)]
    pub nodes: usize,
    /// Failure domains (enclosures); node i is in domain d(i mod domains).
    #[arg(long, default_value_t = 11)]
    pub domains: usize,
    /// Hot spares (the last nodes): no new writes, first repair targets.
    #[arg(long, default_value_t = 0)]
    pub spares: usize,
    /// Erasure code: none, xor:K, rs:K+M or lrc:K+L+G.
    #[arg(long, default_value = "lrc:12+2+2")]
    pub parity: String,
    /// Copies of each data chunk.
    #[arg(long, default_value_t = 1)]
    pub replication: u32,
    /// Place every stripe to survive the loss of any one domain (coord --ha).
    #[arg(long)]
    pub ha: bool,
    /// Capacity per node (16TB, 8TiB...).
    #[arg(long, default_value = "16TB")]
    pub capacity: String,
    /// Share of capacity in use.
    #[arg(long, default_value = "70%")]
    pub fill: String,
    /// Chunk size of the real system (counts real stripes).
    #[arg(long, default_value = "64MiB")]
    pub chunk: String,
    /// Placement of new stripes: random (the coordinator's default) or
    /// copysets (coord --placement copysets).
    #[arg(long, default_value = "random")]
    pub placement: String,
    /// Copysets' scatter width: nodes each node shares stripes with.
    #[arg(long, default_value_t = sim::model::DEFAULT_SCATTER_WIDTH)]
    pub scatter_width: u32,
    /// Annual failure rate of a node.
    #[arg(long, default_value = "2%")]
    pub afr: String,
    /// Weibull shape of node lifetimes (default: exponential).
    #[arg(long)]
    pub weibull: Option<f64>,
    /// Whole-domain failures per domain per year (every node in it lost).
    #[arg(long, default_value = "0")]
    pub domain_afr: String,
    /// Transient outages per node per year (back with data after a while).
    #[arg(long, default_value_t = 0.0)]
    pub transients: f64,
    /// Mean transient outage, hours.
    #[arg(long, default_value_t = 0.5)]
    pub transient_hours: f64,
    /// Silence before the coordinator declares a node dead, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub dead_after_secs: f64,
    /// Latent sector errors per node per year (found by scrub).
    #[arg(long, default_value_t = 0.0)]
    pub lse: f64,
    /// Scrub period, days.
    #[arg(long, default_value_t = 14.0)]
    pub scrub_days: f64,
    /// Correlated failures: power events per year, each leaving
    /// --power-fraction of the nodes dead at once.
    #[arg(long, default_value_t = 0.0)]
    pub power_events: f64,
    /// Share of nodes a power event leaves dead (1%, 0.02).
    #[arg(long, default_value = "1%")]
    pub power_fraction: String,
    /// Days until a failed node is replaced by an empty one.
    #[arg(long, default_value_t = 3.0)]
    pub replace_days: f64,
    /// Repair bandwidth per target node, MB/s.
    #[arg(long, default_value_t = 200.0)]
    pub repair_mbps: f64,
    /// Repair bandwidth cap across the cluster, MB/s.
    #[arg(long)]
    pub cluster_repair_mbps: Option<f64>,
    /// Fixed hours to re-protect a failed node's data (overrides bandwidth).
    #[arg(long)]
    pub repair_hours: Option<f64>,
    /// Simulated years per trial.
    #[arg(long, default_value_t = 10.0)]
    pub years: f64,
    /// Independent trials.
    #[arg(long, default_value_t = 200)]
    pub trials: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Sample stripes simulated (default: about 32 members per node).
    #[arg(long)]
    pub sample_stripes: Option<usize>,
    /// Worker threads (results do not depend on it; default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// A scripted run instead of random failures:
    /// "fail domain d3 at 1d; fail 2 nodes at 1d+1h; fail 1% of nodes at 2d".
    #[arg(long)]
    pub scenario: Option<String>,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also write a PNG of loss probability against repair speed.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

fn params(a: &Args) -> Result<Params> {
    let layout = match &a.layout {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read layout file {}", path.display()))?;
            Layout::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Layout {
            nodes: a.nodes,
            domains: a.domains,
            spares: a.spares,
            parity: a.parity.clone(),
            replication: a.replication,
            ha: a.ha,
            capacity: a.capacity.clone(),
            fill: a.fill.clone(),
            chunk: a.chunk.clone(),
            placement: a.placement.clone(),
            scatter_width: a.scatter_width,
        },
    };
    layout.validate()?;
    let p = Params {
        layout,
        failures: Failures {
            afr: parse_percent(&a.afr)?,
            weibull_shape: a.weibull,
            domain_afr: parse_percent(&a.domain_afr)?,
            transient_per_year: a.transients,
            transient_hours: a.transient_hours,
            dead_after_hours: a.dead_after_secs / 3600.0,
            lse_per_year: a.lse,
            scrub_days: a.scrub_days,
            replace_days: a.replace_days,
            power_per_year: a.power_events,
            power_fraction: parse_percent(&a.power_fraction)?,
        },
        repair: RepairModel {
            node_mbps: a.repair_mbps,
            cluster_mbps: a.cluster_repair_mbps,
            fixed_hours: a.repair_hours,
        },
        years: a.years,
        trials: a.trials,
        seed: a.seed,
        sample_stripes: a.sample_stripes,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    p.validate()?;
    Ok(p)
}

pub async fn run(a: Args) -> Result<()> {
    // Pure computation on worker threads: keep it off the async runtime.
    tokio::task::spawn_blocking(move || run_blocking(a)).await?
}

fn run_blocking(a: Args) -> Result<()> {
    let p = params(&a)?;
    if let Some(s) = &a.scenario {
        if a.plot.is_some() {
            bail!("--plot is for random-failure runs, not --scenario");
        }
        let r = sim::scenario::run(&p, s, &sim::engine::real_decodable)?;
        if a.json {
            outln!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print_scenario(&r);
        }
        return Ok(());
    }
    let started = Instant::now();
    let s = with_bar(&p, "simulating")?;
    let took = started.elapsed().as_secs_f64();
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_summary(&s);
    }
    // Wall time is not part of the (deterministic) output.
    eprintln!("{} trials x {} years in {took:.1} s", s.trials, s.years);
    if let Some(path) = &a.plot {
        plot(&p, path)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

fn with_bar(p: &Params, msg: &str) -> Result<Summary> {
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(p.trials as u64);
        let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} trials ETA {eta}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b.set_message(msg.to_string());
        Some(b)
    } else {
        None
    };
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let s = sim::run(p, &tick)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(s)
}

fn bytes(b: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {}", units[i])
    }
}

fn pct(p: f64) -> String {
    if p == 0.0 {
        "0".into()
    } else if p < 1e-4 {
        format!("{p:.2e}")
    } else {
        format!("{:.3}%", p * 100.0)
    }
}

fn ci(c: [f64; 2]) -> String {
    format!("{} .. {}", pct(c[0]), pct(c[1]))
}

fn years(y: Option<f64>) -> String {
    match y {
        Some(y) => format!("{y:.3e} years"),
        None => "unbounded".into(),
    }
}

fn print_summary(s: &Summary) {
    outln!(
        "{} on {} nodes in {} domains ({} spares{}), {} placement, overhead {:.2}x, {} stored",
        s.scheme,
        s.nodes,
        s.domains,
        s.spares,
        if s.ha { ", HA" } else { "" },
        s.placement,
        s.overhead,
        bytes(s.stored_bytes)
    );
    outln!(
        "{} trials x {} years, seed {}; {:.0} real stripes ({}), repair driven by {} sample stripes",
        s.trials,
        s.years,
        s.seed,
        s.real_stripes,
        s.loss_model,
        s.sample_stripes
    );
    outln!(
        "loss probability per year   {} (95% CI {}); {} of {} trials had any exposure",
        pct(s.loss_probability_per_year),
        ci(s.loss_probability_ci),
        s.trials_exposed,
        s.trials
    );
    outln!(
        "expected lost stripes/year  {:.3e} (95% CI {:.3e} .. {:.3e})",
        s.expected_lost_stripes_per_year,
        s.expected_lost_stripes_ci[0],
        s.expected_lost_stripes_ci[1]
    );
    outln!(
        "MTTDL                       {} (95% CI {} .. {})",
        years(s.mttdl_years),
        years(s.mttdl_ci[0]),
        years(s.mttdl_ci[1])
    );
    outln!(
        "expected bytes lost / year  {} (95% CI {} .. {})",
        bytes(s.expected_bytes_lost_per_year),
        bytes(s.expected_bytes_lost_ci[0]),
        bytes(s.expected_bytes_lost_ci[1])
    );
    if let (Some(p), Some(c)) = (
        s.power_loss_probability_per_event,
        s.power_loss_probability_ci,
    ) {
        outln!(
            "power events                {} simulated; P(loss) per event {} (95% CI {}), {:.3e} stripes lost per event",
            s.power_events,
            pct(p),
            ci(c),
            s.power_expected_lost_stripes_per_event.unwrap_or(0.0)
        );
    }
    outln!(
        "reduced protection          {:.2} hours per stripe per year",
        s.reduced_protection_hours_per_stripe_year
    );
    outln!(
        "node failures / year        {:.2}",
        s.node_failures_per_year
    );
    outln!(
        "repair traffic              {} per failure, {} per year (read from {} nodes per failure); {} written per year",
        bytes(s.repair_bytes_per_failure),
        bytes(s.repair_bytes_per_year),
        s.repair_scatter,
        bytes(s.repair_written_bytes_per_year)
    );
    outln!(
        "peak repair queue           {} (median trial), {} (worst)",
        bytes(s.peak_repair_queue_bytes_median),
        bytes(s.peak_repair_queue_bytes_max)
    );
    let t = &s.time_to_full_protection_hours;
    outln!(
        "time to full protection     p50 {:.1} h, p90 {:.1} h, p99 {:.1} h, max {:.1} h ({} failures)",
        t.p50,
        t.p90,
        t.p99,
        t.max,
        t.count
    );
}

fn print_scenario(r: &sim::scenario::Report) {
    outln!(
        "{} on {} nodes in {} domains, {} placement ({:.0} real stripes; {} sample stripes drive repair)",
        r.scheme,
        r.nodes,
        r.domains,
        r.placement,
        r.stripes_per_sample * r.sample_stripes as f64,
        r.sample_stripes
    );
    outln!(
        "{:>10}  {:<24} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>8}",
        "time",
        "event",
        "healthy",
        "degraded",
        "at-risk",
        "lost (E)",
        "P(loss)",
        "95% range",
        "repairs"
    );
    for st in r.steps.iter().chain([&r.settled]) {
        outln!(
            "{:>9.2}h  {:<24} {:>12.0} {:>12.0} {:>12.0} {:>12.3} {:>10} {:>10} {:>8}",
            st.at_hours,
            st.event,
            st.healthy,
            st.degraded,
            st.at_risk,
            st.lost,
            pct(st.loss_probability),
            format!("{}..{}", st.lost_range[0], st.lost_range[1]),
            st.repairs_in_flight
        );
    }
    match r.full_protection_hours {
        Some(h) => outln!("full protection {h:.2} h after the first failure"),
        None => outln!("not fully protected again within a year"),
    }
    let lost: f64 = r.settled.lost_bytes;
    outln!(
        "lost {}; repair read {}",
        bytes(lost),
        bytes(r.repair_read_bytes)
    );
}

/// Loss probability per year at repair speeds around the chosen one,
/// with the 95% interval as error bars.
/// Without the `plots` feature (the demo's build) there is no plotter.
#[cfg(not(feature = "plots"))]
fn plot(_p: &Params, _path: &std::path::Path) -> Result<()> {
    bail!("this dfs-sim was built without plots; rebuild it with the default features (cargo build --release) to use --plot")
}

#[cfg(feature = "plots")]
fn plot(p: &Params, path: &std::path::Path) -> Result<()> {
    use plotters::prelude::*;
    sim_font()?;
    let speeds: Vec<f64> = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0]
        .iter()
        .map(|f| p.repair.node_mbps * f)
        .collect();
    let mut pts = Vec::new();
    for (i, &mbps) in speeds.iter().enumerate() {
        let mut q = p.clone();
        q.repair.node_mbps = mbps;
        q.repair.fixed_hours = None;
        let s = with_bar(
            &q,
            &format!("plot {}/{} ({mbps:.0} MB/s)", i + 1, speeds.len()),
        )?;
        pts.push((
            mbps,
            s.loss_probability_per_year,
            s.loss_probability_ci[0],
            s.loss_probability_ci[1],
        ));
    }
    let ymax = pts.iter().map(|p| p.3).fold(0.0f64, f64::max).max(1e-6) * 1.1;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw the plot: {e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "{} on {} nodes, {} domains, AFR {:.1}%: annual loss probability ({} trials x {} y)",
        p.layout.parity,
        p.layout.nodes,
        p.layout.domains,
        p.failures.afr * 100.0,
        p.trials,
        p.years
    );
    let (x0, x1) = (speeds[0] / 1.5, speeds[speeds.len() - 1] * 1.5);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("repair bandwidth per node (MB/s)")
        .y_desc("P(loss) per year")
        .y_label_formatter(&|v| format!("{:.2}%", v * 100.0))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            BLUE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            pts.iter()
                .map(|p| Circle::new((p.0, p.1), 4, BLUE.filled())),
        )
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            pts.iter()
                .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], BLUE.stroke_width(1))),
        )
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// plotters draws text with a font we hand it (no system font lookup, no
/// fontconfig): the first DejaVu/Liberation sans found on the machine.
#[cfg(feature = "plots")]
fn sim_font() -> Result<()> {
    const FONTS: [&str; 4] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    let Some(bytes) = FONTS.iter().find_map(|f| std::fs::read(f).ok()) else {
        bail!("--plot needs a TrueType font: install fonts-dejavu-core (looked in {FONTS:?})");
    };
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("the font found for --plot is not a usable TrueType font"))?;
    Ok(())
}
