//! Framing: how bytes on a TCP stream become messages and chunk data.
//!
//! Wire layout of every frame (after the 4-byte length, which tokio-util's
//! `LengthDelimitedCodec` reads and bounds before allocating anything):
//!
//! ```text
//! +-----------------+---------+------------------------------+
//! | length: u32 BE  | tag: u8 | body: length - 1 bytes       |
//! +-----------------+---------+------------------------------+
//! tag 0x01  message: body is one postcard-encoded value, no trailing bytes
//! tag 0x02  data:    body is raw chunk bytes, at most DATA_FRAME_MAX
//! ```
//!
//! A chunk therefore moves as a message (its header) followed by data frames,
//! never as one 64 MiB allocation. A length above [`MAX_FRAME_LEN`] is an error
//! that closes the connection before a single byte of the body is buffered.

use crate::error::{Error, Result, WireError};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Largest frame accepted from a peer, tag included. Big enough for the
/// catalog entry of a multi-terabyte file, small enough that a hostile length
/// prefix cannot make a process allocate much.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Largest data frame a sender produces; receivers accept up to
/// [`MAX_FRAME_LEN`] but count every byte against the announced chunk length.
pub const DATA_FRAME_MAX: usize = 1024 * 1024;

const TAG_MESSAGE: u8 = 0x01;
const TAG_DATA: u8 = 0x02;

/// How long a connect may take before the peer is treated as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One decoded frame.
#[derive(Debug)]
pub enum Frame {
    /// A postcard-encoded message body, decoded lazily by the receiver who
    /// knows which type to expect.
    Message(Bytes),
    /// A slice of chunk data.
    Data(Bytes),
}

impl Frame {
    fn name(&self) -> &'static str {
        match self {
            Frame::Message(_) => "a message",
            Frame::Data(_) => "a data frame",
        }
    }
}

/// A framed TCP connection: owns the socket and its buffers, and does nothing
/// but read and write frames.
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    peer: Option<SocketAddr>,
    /// Set by the accept loop: lets it see when this connection waits for a
    /// request, so idle connections can be evicted at the connection cap.
    activity: Option<std::sync::Arc<crate::activity::Activity>>,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

impl Connection {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().ok();
        let mut framed = Framed::with_capacity(stream, codec(), 256 * 1024);
        framed.set_backpressure_boundary(2 * DATA_FRAME_MAX);
        Connection {
            framed,
            peer,
            activity: None,
        }
    }

    /// Connects with a deadline, so a black-holed address fails in seconds.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> Result<Self> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(Connection::new(s)),
            Ok(Err(e)) => Err(Error::Io(e)),
            Err(_) => Err(Error::Timeout("connecting")),
        }
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    pub(crate) fn set_activity(&mut self, a: std::sync::Arc<crate::activity::Activity>) {
        self.activity = Some(a);
    }

    /// Queues a message without flushing; pair with [`Connection::flush`].
    /// (Data frames never wait in this queue: see [`Connection::write_data`].)
    pub async fn feed<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(TAG_MESSAGE);
        let mut w = buf.writer();
        postcard::to_io(msg, &mut w)?;
        let frame = w.into_inner().freeze();
        if frame.len() > MAX_FRAME_LEN {
            // The peer would refuse it anyway; nothing has been written, so
            // the caller can still send something smaller (an error).
            return Err(Error::TooLarge(frame.len()));
        }
        self.framed.feed(frame).await?;
        Ok(())
    }

    /// Sends a message and flushes it.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        self.feed(msg).await?;
        self.flush().await
    }

    /// Sends `Ok(msg)`: servers answer every request with a `Result`. A
    /// response too large for one frame is replaced by an error that says so.
    pub async fn reply<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        match self.send(&Ok::<&T, WireError>(msg)).await {
            Err(Error::TooLarge(n)) => {
                self.reply_err(WireError::new(
                    crate::ErrorKind::BadRequest,
                    format!(
                        "the response would be {n} bytes, more than the {MAX_FRAME_LEN}-byte frame limit; ask for less (e.g. a narrower prefix)"
                    ),
                ))
                .await
            }
            other => other,
        }
    }

    /// Sends `Err(err)` in place of a response.
    pub async fn reply_err(&mut self, err: WireError) -> Result<()> {
        self.send(&Err::<(), WireError>(err)).await
    }

    /// Writes one data frame (at most [`DATA_FRAME_MAX`] bytes) straight to
    /// the socket: the frame header, then the caller's bytes, without
    /// copying them through the codec's buffer. Chunk data is most of what
    /// crosses the wire, so this is the hot path. Queued messages are
    /// flushed first to keep frames in order.
    pub async fn write_data(&mut self, data: &[u8]) -> Result<()> {
        debug_assert!(data.len() <= DATA_FRAME_MAX);
        self.flush().await?;
        let mut header = [0u8; 5];
        header[..4].copy_from_slice(&((data.len() + 1) as u32).to_be_bytes());
        header[4] = TAG_DATA;
        let sock = self.framed.get_mut();
        sock.write_all(&header).await?;
        sock.write_all(data).await?;
        Ok(())
    }

    /// Sends a whole buffer as a run of data frames.
    pub async fn send_data(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(DATA_FRAME_MAX) {
            self.write_data(piece).await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<()> {
        SinkExt::<Bytes>::flush(&mut self.framed).await?;
        Ok(())
    }

    /// Reads the next frame; `Ok(None)` on a clean close between frames. A
    /// close inside a frame, an oversized length or an unknown tag is an error.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>> {
        let Some(frame) = self.framed.next().await else {
            return Ok(None);
        };
        let mut frame = frame?;
        if frame.is_empty() {
            return Err(Error::Decode(postcard::Error::DeserializeUnexpectedEnd));
        }
        let tag = frame[0];
        let body = frame.split_off(1).freeze();
        match tag {
            TAG_MESSAGE => Ok(Some(Frame::Message(body))),
            TAG_DATA => Ok(Some(Frame::Data(body))),
            _ => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown frame tag {tag:#04x}"),
            ))),
        }
    }

    /// Reads a message of type `T`; a data frame or a clean close is an error.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        match self.read_frame().await? {
            None => Err(Error::Closed),
            Some(Frame::Message(body)) => decode(&body),
            Some(other) => Err(Error::Unexpected {
                expected: "a message",
                got: other.name(),
            }),
        }
    }

    /// Like [`Connection::recv`] but `Ok(None)` on a clean close, for servers
    /// waiting for the next request.
    pub async fn recv_opt<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.read_frame().await? {
            None => Ok(None),
            Some(Frame::Message(body)) => decode(&body).map(Some),
            Some(other) => Err(Error::Unexpected {
                expected: "a message",
                got: other.name(),
            }),
        }
    }

    /// The next request of a server's connection loop. `None` when the peer
    /// closed, the server is stopping, or the request was malformed (logged
    /// here); in every case the caller closes this connection and only it.
    pub async fn next_request<T: DeserializeOwned>(
        &mut self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<T> {
        if let Some(a) = &self.activity {
            a.set_idle(true);
        }
        let r = tokio::select! {
            r = self.recv_opt::<T>() => r,
            _ = stop.changed() => return None,
            _ = tokio::time::sleep(crate::activity::IDLE_TIMEOUT) => {
                tracing::debug!("closing a connection idle for {:?}", crate::activity::IDLE_TIMEOUT);
                return None;
            }
        };
        if let Some(a) = &self.activity {
            a.set_idle(false);
        }
        match r {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "bad request, closing connection");
                None
            }
        }
    }

    /// Reads a reply sent with [`Connection::reply`]; the peer's error becomes
    /// [`Error::Remote`].
    pub async fn recv_reply<T: DeserializeOwned>(&mut self) -> Result<T> {
        match self.recv::<std::result::Result<T, WireError>>().await? {
            Ok(v) => Ok(v),
            Err(e) => Err(Error::Remote(e)),
        }
    }

    /// Reads one data frame.
    pub async fn recv_data(&mut self) -> Result<Bytes> {
        match self.read_frame().await? {
            None => Err(Error::Closed),
            Some(Frame::Data(d)) => Ok(d),
            Some(other) => Err(Error::Unexpected {
                expected: "a data frame",
                got: other.name(),
            }),
        }
    }
}

/// Decodes one message, rejecting trailing bytes: a frame is exactly one value.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} trailing bytes after message", rest.len()),
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (Connection, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (Connection::new(s.unwrap().0), c.unwrap())
    }

    #[tokio::test]
    async fn oversized_length_is_rejected_before_allocation() {
        let (mut conn, mut raw) = pair().await;
        raw.write_all(&(4u32 << 30).wrapping_sub(1).to_be_bytes())
            .await
            .unwrap();
        raw.write_all(b"\x01garbage").await.unwrap();
        let err = conn.read_frame().await.unwrap_err();
        assert!(err.to_string().contains("frame size too big"), "{err}");
    }

    #[tokio::test]
    async fn messages_and_data_round_trip() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = Connection::connect(addr).await.unwrap();
            c.send(&("hello".to_string(), 7u32)).await.unwrap();
            c.send_data(&vec![9u8; DATA_FRAME_MAX + 10]).await.unwrap();
            c.reply(&5u8).await.unwrap();
            c.reply_err(WireError::new(crate::ErrorKind::Corrupt, "bad"))
                .await
                .unwrap();
        });
        let mut s = Connection::new(l.accept().await.unwrap().0);
        let (a, b): (String, u32) = s.recv().await.unwrap();
        assert_eq!((a.as_str(), b), ("hello", 7));
        assert_eq!(s.recv_data().await.unwrap().len(), DATA_FRAME_MAX);
        assert_eq!(s.recv_data().await.unwrap().len(), 10);
        assert_eq!(s.recv_reply::<u8>().await.unwrap(), 5);
        let e = s.recv_reply::<u8>().await.unwrap_err();
        assert_eq!(e.remote_kind(), Some(crate::ErrorKind::Corrupt));
        client.await.unwrap();
        assert!(s.recv_opt::<u8>().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_reply_becomes_an_error_reply() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut s = Connection::new(l.accept().await.unwrap().0);
            s.reply(&vec![7u8; MAX_FRAME_LEN + 1]).await.unwrap();
            s.reply(&1u8).await.unwrap();
        });
        let mut c = Connection::connect(addr).await.unwrap();
        let e = c.recv_reply::<Vec<u8>>().await.unwrap_err();
        assert!(e.to_string().contains("frame limit"), "{e}");
        // The connection is still in sync.
        assert_eq!(c.recv_reply::<u8>().await.unwrap(), 1);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_and_trailing_bytes_are_errors() {
        let (mut conn, mut raw) = pair().await;
        // A message frame whose body is not a valid (String, u32).
        raw.write_all(&5u32.to_be_bytes()).await.unwrap();
        raw.write_all(&[TAG_MESSAGE, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(conn.recv::<(String, u32)>().await.is_err());
        // Trailing bytes after a valid u8.
        raw.write_all(&3u32.to_be_bytes()).await.unwrap();
        raw.write_all(&[TAG_MESSAGE, 1, 2]).await.unwrap();
        assert!(conn.recv::<u8>().await.is_err());
        // Unknown tag.
        raw.write_all(&2u32.to_be_bytes()).await.unwrap();
        raw.write_all(&[0x7f, 1]).await.unwrap();
        assert!(conn.read_frame().await.is_err());
    }
}
