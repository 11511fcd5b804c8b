//! One HTTP/1.1 client connection to a vendor, read in place.
//!
//! The gateway's vendor leg needs little of HTTP: one request at a time, a response header, and
//! a body framed by length, by chunks or by the connection's end. What it needs most is to be
//! small while a stream waits: the read buffer starts at 2 KiB and grows only while reads fill
//! it, and body pieces are handed on as slices of it without a copy. Pingora's client keeps a
//! 64 KiB body buffer for the life of every response, and hyper's a fixed 8 KiB write buffer, an
//! 8 KiB read buffer and a 9 KiB channel block per connection (docs/performance.md).

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::transport::Transport;

/// The first read buffer; most stream events and many whole replies fit.
const READ_START: usize = 2 * 1024;
/// The largest single read.
const READ_MAX: usize = 256 * 1024;
/// The largest response header block accepted.
const HEAD_MAX: usize = 64 * 1024;
/// The most header fields in one response.
const FIELDS_MAX: usize = 128;
/// The longest chunk-size line (with extensions) or trailer block accepted.
const LINE_MAX: usize = 4 * 1024;
/// Request bodies up to this size go out in the same write as the header.
const COALESCE_MAX: usize = 16 * 1024;

/// Why an exchange failed: the log gets the detail, the client a fixed message.
#[derive(Debug)]
pub(super) enum Failure {
    Io(io::Error),
    /// The vendor broke HTTP/1.1, or closed the connection early.
    Protocol(&'static str),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => write!(f, "{e}"),
            Failure::Protocol(what) => f.write_str(what),
        }
    }
}

type Result<T> = std::result::Result<T, Failure>;

pub(super) struct Connection {
    io: Transport,
    buf: BytesMut,
    /// How much the next read reserves: doubles while reads fill the buffer.
    read_size: usize,
}

/// A response header and how its body is framed.
pub(super) struct Response {
    pub(super) status: u16,
    /// The header block as received, for looking fields up.
    raw: Bytes,
    /// Where the content type's value is in `raw`, found by the parse that read the head: every
    /// reply's is read, and a second parse of the head for it cost ~1,500 instructions.
    content_type: Option<std::ops::Range<usize>>,
    framing: Framing,
    keep_alive: bool,
}

#[derive(Debug, PartialEq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, PartialEq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

impl Connection {
    pub(super) fn new(io: Transport) -> Self {
        Connection {
            io,
            buf: BytesMut::new(),
            read_size: READ_START,
        }
    }

    /// Whether an idle connection was closed (or spoke out of turn) while it sat in the pool.
    pub(super) fn is_stale(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        !self.buf.is_empty()
            || !matches!(
                Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
                Poll::Pending
            )
    }

    /// Writes one request: the header block, then the body.
    pub(super) async fn write_request(&mut self, head: &[u8], body: &Bytes) -> io::Result<()> {
        if body.len() <= COALESCE_MAX {
            let mut all = Vec::with_capacity(head.len() + body.len());
            all.extend_from_slice(head);
            all.extend_from_slice(body);
            self.io.write_all(&all).await?;
        } else {
            self.io.write_all(head).await?;
            self.io.write_all(body).await?;
        }
        self.io.flush().await
    }

    /// Reads the response header; interim (1xx) responses are skipped.
    pub(super) async fn read_response(&mut self) -> Result<Response> {
        loop {
            if let Some(response) = self.parse_head()? {
                return Ok(response);
            }
            if self.buf.len() >= HEAD_MAX {
                return Err(Failure::Protocol("response header too large"));
            }
            // The head is awaited with the buffer kept: a reply that comes whole is then read
            // without an allocation.
            let want = self.read_size;
            if self.io.read_into(&mut self.buf, want, false).await? == 0 {
                return Err(Failure::Protocol("connection closed before a response"));
            }
        }
    }

    fn parse_head(&mut self) -> Result<Option<Response>> {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; FIELDS_MAX];
            let mut parsed = httparse::Response::new(&mut fields);
            let len = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(Failure::Protocol("invalid response header")),
            };
            let status = parsed.code.unwrap_or(0);
            if (100..200).contains(&status) {
                self.buf.advance(len);
                continue;
            }
            let framing = framing(status, parsed.headers)?;
            let keep_alive = parsed.version == Some(1)
                && framing != Framing::UntilClose
                && !field_values(parsed.headers, "connection")
                    .any(|v| v.eq_ignore_ascii_case(b"close"));
            let start = self.buf.as_ptr() as usize;
            let content_type = field_values(parsed.headers, "content-type")
                .next()
                .map(|v| {
                    let at = (v.as_ptr() as usize).wrapping_sub(start);
                    at..at + v.len()
                });
            let raw = Bytes::copy_from_slice(&self.buf[..len]);
            self.buf.advance(len);
            return Ok(Some(Response {
                status,
                raw,
                content_type,
                framing,
                keep_alive,
            }));
        }
    }

    /// The next piece of the body, a slice of the read buffer; None at its end.
    pub(super) async fn read_body(&mut self, response: &mut Response) -> Result<Option<Bytes>> {
        loop {
            match &mut response.framing {
                Framing::Done => return Ok(None),
                Framing::Length(0) => response.framing = Framing::Done,
                Framing::Length(left) => {
                    if self.buf.is_empty() && self.fill_toward(*left).await? == 0 {
                        return Err(Failure::Protocol("connection closed inside the body"));
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        // Ended here, so that a reader that stops at the last byte (it knows
                        // the length too) leaves a reusable connection.
                        response.framing = Framing::Done;
                    }
                    return Ok(Some(self.buf.split_to(n as usize).freeze()));
                }
                Framing::UntilClose => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        response.framing = Framing::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked(Chunk::Data(left)) => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(Failure::Protocol("connection closed inside a chunk"));
                    }
                    let n = (*left).min(self.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        response.framing = Framing::Chunked(Chunk::DataEnd);
                    }
                    return Ok(Some(self.buf.split_to(n as usize).freeze()));
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    if self.buf.len() < 2 {
                        self.fill_or_fail().await?;
                        continue;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(Failure::Protocol("chunk not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    response.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = self.line()? else {
                        self.fill_or_fail().await?;
                        continue;
                    };
                    let size = chunk_size(&line)?;
                    response.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Trailer) => {
                    let Some(line) = self.line()? else {
                        self.fill_or_fail().await?;
                        continue;
                    };
                    // Trailer fields carry nothing the gateway uses; an empty line ends them.
                    if line.is_empty() {
                        response.framing = Framing::Done;
                    }
                }
            }
        }
    }

    /// Whether the connection can carry another request after this response.
    pub(super) fn reusable(&self, response: &Response) -> bool {
        response.keep_alive && response.framing == Framing::Done && self.buf.is_empty()
    }

    /// The next CRLF-terminated line, taken out of the buffer without its CRLF.
    fn line(&mut self) -> Result<Option<BytesMut>> {
        // memchr for the LF, not memmem for CRLF: `memmem::find` builds a searcher at each call
        // (~190 instructions a streamed chunk).
        let crlf = memchr::memchr_iter(b'\n', &self.buf)
            .find(|&lf| lf > 0 && self.buf[lf - 1] == b'\r')
            .map(|lf| lf - 1);
        match crlf {
            Some(end) => {
                let line = self.buf.split_to(end);
                self.buf.advance(2);
                Ok(Some(line))
            }
            None if self.buf.len() > LINE_MAX => Err(Failure::Protocol("chunk line too long")),
            None => Ok(None),
        }
    }

    async fn fill_or_fail(&mut self) -> Result<()> {
        match self.fill().await? {
            0 => Err(Failure::Protocol("connection closed inside a chunked body")),
            _ => Ok(()),
        }
    }

    /// Reads what is there, into room sized by how full earlier reads came back.
    async fn fill(&mut self) -> io::Result<usize> {
        let want = self.read_size;
        let n = self.read_reserving(want).await?;
        self.read_size = if n >= want {
            (want * 2).min(READ_MAX)
        } else {
            (want / 2).max(READ_START)
        };
        Ok(n)
    }

    /// Reads toward a body of known length: room for all of it, up to the largest read.
    async fn fill_toward(&mut self, left: u64) -> io::Result<usize> {
        self.read_reserving(left.clamp(1, READ_MAX as u64) as usize)
            .await
    }

    /// Reads body bytes; an empty buffer is let go while the next ones are awaited, which for a
    /// stream is most of its life.
    async fn read_reserving(&mut self, want: usize) -> io::Result<usize> {
        self.io.read_into(&mut self.buf, want, true).await
    }

    /// A buffer grown for a large body is let go before the connection goes idle.
    pub(super) fn shed(&mut self) {
        if self.buf.capacity() > 4 * READ_START {
            self.buf = BytesMut::new();
            self.read_size = READ_START;
        }
    }
}

impl Response {
    /// The first value of a header field, if it is text.
    pub(super) fn field(&self, name: &str) -> Option<&str> {
        let mut fields = [httparse::EMPTY_HEADER; FIELDS_MAX];
        let mut parsed = httparse::Response::new(&mut fields);
        parsed.parse(&self.raw).ok()?;
        let value = field_values(parsed.headers, name).next()?;
        std::str::from_utf8(value).ok()
    }

    /// The content type, if it is text.
    pub(super) fn content_type(&self) -> Option<&str> {
        let value = self.raw.get(self.content_type.clone()?)?;
        std::str::from_utf8(value).ok()
    }

    pub(super) fn is_done(&self) -> bool {
        self.framing == Framing::Done
    }
}

/// The request header block. Names and values come from the gateway's own code and config;
/// a CR or LF in any of them is refused rather than sent.
pub(super) fn request_head(
    method: &str,
    path_and_query: &str,
    authority: &str,
    body_len: usize,
    headers: &[(&str, String)],
) -> Option<Vec<u8>> {
    let clean = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
    let ok = clean(method)
        && !path_and_query
            .bytes()
            .any(|b| b == b' ' || b == b'\r' || b == b'\n')
        && clean(authority)
        && headers.iter().all(|(n, v)| clean(n) && clean(v));
    if !ok {
        return None;
    }
    let mut head = Vec::with_capacity(256 + path_and_query.len());
    for part in [
        method,
        " ",
        path_and_query,
        " HTTP/1.1\r\nhost: ",
        authority,
    ] {
        head.extend_from_slice(part.as_bytes());
    }
    head.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
    write!(head, "{body_len}\r\n").expect("writing to a Vec cannot fail");
    for (name, value) in headers {
        for part in [name, ": ", value.as_str(), "\r\n"] {
            head.extend_from_slice(part.as_bytes());
        }
    }
    head.extend_from_slice(b"\r\n");
    Some(head)
}

fn field_values<'h, 'b: 'h>(
    fields: &'h [httparse::Header<'b>],
    name: &'h str,
) -> impl Iterator<Item = &'b [u8]> + 'h {
    fields
        .iter()
        .filter(move |f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value)
}

/// How the body is delimited (RFC 9112 section 6.3).
fn framing(status: u16, fields: &[httparse::Header<'_>]) -> Result<Framing> {
    if status == 204 || status == 304 {
        return Ok(Framing::Done);
    }
    if let Some(te) = field_values(fields, "transfer-encoding").last() {
        let last_coding = te.rsplit(|b| *b == b',').next().unwrap_or_default();
        return Ok(
            if last_coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::UntilClose
            },
        );
    }
    let mut length = None;
    for value in field_values(fields, "content-length") {
        let n = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Failure::Protocol("invalid content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(Failure::Protocol("conflicting content-length"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn chunk_size(line: &[u8]) -> Result<u64> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(Failure::Protocol("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, b| {
        let d = (*b as char)
            .to_digit(16)
            .ok_or(Failure::Protocol("invalid chunk size"))?;
        Ok(n * 16 + d as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection over one end of a Unix socket pair, with the vendor's bytes already sent.
    async fn replying(wire: &'static [u8]) -> Connection {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        theirs.write_all(wire).await.unwrap();
        drop(theirs);
        Connection::new(Transport::Unix(ours))
    }

    async fn body_of(c: &mut Connection, r: &mut Response) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(piece) = c.read_body(r).await? {
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }

    #[tokio::test]
    async fn reads_a_length_framed_reply_and_keeps_the_connection() {
        let mut c = replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        let mut r = c.read_response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.field("content-type"), Some("application/json"));
        assert_eq!(r.content_type(), Some("application/json"));
        assert_eq!(r.field("retry-after"), None);
        // Read to its last byte, not past it: that is the end.
        assert_eq!(&c.read_body(&mut r).await.unwrap().unwrap()[..], b"{}");
        assert!(r.is_done() && c.reusable(&r));
        assert!(c.read_body(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stream_waiting_for_its_next_event_holds_no_read_buffer() {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut c = Connection::new(Transport::Unix(ours));
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";
        theirs.write_all(head).await.unwrap();
        let mut r = c.read_response().await.unwrap();
        assert_eq!(&c.read_body(&mut r).await.unwrap().unwrap()[..], b"first");
        let mut next = Box::pin(c.read_body(&mut r));
        assert!(futures::poll!(next.as_mut()).is_pending());
        drop(next);
        assert_eq!(c.buf.capacity(), 0, "nothing is held while waiting");
        theirs.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        assert_eq!(body_of(&mut c, &mut r).await.unwrap(), b"second");
    }

    #[tokio::test]
    async fn decodes_chunks_extensions_and_trailers() {
        let mut c = replying(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nx-t: 1\r\n\r\n").await;
        let mut r = c.read_response().await.unwrap();
        assert_eq!(body_of(&mut c, &mut r).await.unwrap(), b"hello, world!!!");
        assert!(c.reusable(&r));
    }

    #[tokio::test]
    async fn a_body_until_close_is_read_and_the_connection_dropped() {
        let mut c = replying(b"HTTP/1.1 200 OK\r\n\r\nall of it").await;
        let mut r = c.read_response().await.unwrap();
        assert_eq!(r.content_type(), None);
        assert_eq!(body_of(&mut c, &mut r).await.unwrap(), b"all of it");
        assert!(!c.reusable(&r));
        let mut c =
            replying(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await;
        let mut r = c.read_response().await.unwrap();
        assert_eq!(body_of(&mut c, &mut r).await.unwrap(), b"");
        assert!(!c.reusable(&r));
    }

    #[tokio::test]
    async fn broken_framing_is_an_error_never_a_panic() {
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"",
        ] {
            let wire: &'static [u8] = Box::leak(wire.to_vec().into_boxed_slice());
            let mut c = replying(wire).await;
            let outcome = match c.read_response().await {
                Ok(mut r) => body_of(&mut c, &mut r).await.map(|_| ()),
                Err(e) => Err(e),
            };
            assert!(outcome.is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn a_header_with_a_line_break_is_never_sent() {
        let h = |v: &str| request_head("POST", "/v1/x", "api", 2, &[("authorization", v.into())]);
        assert!(h("Bearer k").is_some());
        assert!(h("Bearer k\r\nx-injected: 1").is_none());
        assert!(request_head("POST", "/v1/x HTTP/1.1\r\n", "api", 0, &[]).is_none());
        let head = String::from_utf8(h("Bearer k").unwrap()).unwrap();
        assert_eq!(head, "POST /v1/x HTTP/1.1\r\nhost: api\r\ncontent-type: application/json\r\ncontent-length: 2\r\nauthorization: Bearer k\r\n\r\n");
    }
}
