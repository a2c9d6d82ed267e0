//! A second connection to the same Redis for bulk writes: commands are encoded straight into one
//! buffer and the answers are read without building a value for each.
//!
//! Why not the client the rest of the tool uses: a backfill sends about a million `XADD`s, and
//! the client builds a command object with its own buffers for each and parses each answer into
//! its own value. Measured on 1 M events, that cost more of our CPU than Redis spent on the
//! writes, on a machine whose two cores we share with Redis and Postgres. Here a page of
//! commands is one buffer, and an `XADD`'s answer (a stream id) is only counted.
//!
//! The connection speaks RESP2 and opens the way the main one does: same address, same TLS
//! trust policy and client certificate, same user, password and database.

use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::RedisError;

/// One answer, as much of it as a bulk writer needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`-like status.
    Status,
    /// A bulk string; its value when it is a (possibly negative) decimal integer, as `TIME`'s
    /// parts are. A stream id is not one: it is only counted.
    Bulk(Option<i64>),
    Nil,
    Int(i64),
    /// An error answer, as Redis's own client reads it (code and detail).
    Error(redis::ServerError),
    Array(Vec<Reply>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw connection: write a page of encoded commands, read as many answers.
pub struct Bulk {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    at: usize,
    addr: String,
    timeout: Duration,
}

impl Bulk {
    pub(super) async fn open(info: &ConnectionInfo, addr: &str, timeout: Duration) -> Result<Bulk, RedisError> {
        let err = |source| RedisError { op: "connect (bulk)".into(), addr: addr.to_string(), source };
        let io = match tokio::time::timeout(timeout, connect(info)).await {
            Ok(r) => r.map_err(err)?,
            Err(_) => return Err(err(timed_out(timeout))),
        };
        let mut bulk = Bulk { io, buf: Vec::with_capacity(64 * 1024), at: 0, addr: addr.to_string(), timeout };
        let settings = info.redis_settings();
        let mut hello = Vec::new();
        let mut n = 0;
        if let Some(password) = settings.password() {
            let mut auth = vec!["AUTH".as_bytes()];
            auth.extend(settings.username().map(str::as_bytes));
            auth.push(password.as_bytes());
            encode(&mut hello, &auth);
            n += 1;
        }
        if settings.db() != 0 {
            encode(&mut hello, &[b"SELECT", settings.db().to_string().as_bytes()]);
            n += 1;
        }
        let mut replies = Vec::new();
        bulk.exchange("AUTH/SELECT (bulk)", &hello, n, &mut replies).await?;
        if let Some(Reply::Error(e)) = replies.into_iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(RedisError { op: "AUTH/SELECT (bulk)".into(), addr: addr.to_string(), source: e.into() });
        }
        Ok(bulk)
    }

    /// Sends `out` (`n` encoded commands) and reads their `n` answers into `replies` (cleared
    /// first), all within the connection's timeout: a Redis that stalls mid-page is an error
    /// named `op`, not a hang. Error answers are returned as [`Reply::Error`] for the caller
    /// to judge; a broken connection or protocol is an `Err`.
    pub async fn exchange(
        &mut self,
        op: &str,
        out: &[u8],
        n: usize,
        replies: &mut Vec<Reply>,
    ) -> Result<(), RedisError> {
        replies.clear();
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange_inner(out, n, replies)).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(timeout)),
        };
        result.map_err(|source| RedisError { op: op.to_string(), addr: self.addr.clone(), source })
    }

    async fn exchange_inner(&mut self, out: &[u8], n: usize, replies: &mut Vec<Reply>) -> redis::RedisResult<()> {
        if n == 0 {
            return Ok(());
        }
        // Written and read at once: Redis answers while the page is still arriving, and a page
        // of answers left unread would only grow Redis's output buffer.
        let (mut rd, mut wr) = tokio::io::split(&mut self.io);
        let (buf, at) = (&mut self.buf, &mut self.at);
        let write = async {
            wr.write_all(out).await?;
            wr.flush().await
        };
        let read = async {
            while replies.len() < n {
                match parse(&buf[*at..])? {
                    Some((reply, used)) => {
                        replies.push(reply);
                        *at += used;
                    }
                    None => {
                        buf.drain(..*at);
                        *at = 0;
                        buf.reserve(64 * 1024);
                        if rd.read_buf(buf).await? == 0 {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the connection closed mid-answer",
                            )
                            .into());
                        }
                    }
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        let (written, read) = tokio::join!(write, read);
        written?;
        read?;
        // An answer beyond the commands sent means they were encoded wrong: the next page's
        // answers would be read against the wrong commands.
        if self.at < self.buf.len() {
            return Err(protocol("more answers than commands"));
        }
        Ok(())
    }
}

/// An answer that is not what the command gets: Redis's error as it said it, or a protocol
/// surprise.
pub fn unexpected(op: &str, addr: &str, reply: &Reply) -> RedisError {
    let source = match reply {
        Reply::Error(e) => e.clone().into(),
        other => {
            redis::RedisError::from((redis::ErrorKind::Parse, "an answer of an unexpected form", format!("{other:?}")))
        }
    };
    RedisError { op: op.to_string(), addr: addr.to_string(), source }
}

fn timed_out(timeout: Duration) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {}", crate::duration::format_duration(timeout)),
    ))
}

async fn connect(info: &ConnectionInfo) -> redis::RedisResult<Box<dyn Io>> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            Ok(Box::new(tcp))
        }
        ConnectionAddr::TcpTls { host, port, .. } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(crate::tls::client_config()?));
            Ok(Box::new(connector.connect(name, tcp).await?))
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
        #[allow(unreachable_patterns)]
        _ => {
            Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "an address kind this build cannot reach").into())
        }
    }
}

/// Appends one command, RESP-encoded, to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    head(out, b'*', args.len());
    for a in args {
        arg(out, a);
    }
}

/// Appends the header of a command of `n` arguments; [`arg`] appends each.
pub fn command(out: &mut Vec<u8>, n: usize) {
    head(out, b'*', n);
}

/// Appends one argument of a command started with [`command`].
pub fn arg(out: &mut Vec<u8>, a: &[u8]) {
    head(out, b'$', a.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b"\r\n");
}

/// Appends an integer argument without allocating.
pub fn int_arg(out: &mut Vec<u8>, v: i64) {
    let mut b = itoa::Buffer::new();
    arg(out, b.format(v).as_bytes());
}

fn head(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut b = itoa::Buffer::new();
    out.push(kind);
    out.extend_from_slice(b.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn protocol(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, what))
}

/// The line at the start of `b` (without its CRLF) and the bytes it takes, `None` if incomplete.
fn line(b: &[u8]) -> Option<(&[u8], usize)> {
    let end = b.iter().position(|&c| c == b'\n')?;
    if end == 0 || b[end - 1] != b'\r' {
        return Some((&b[..end], end + 1)); // malformed: judged by the caller's parse
    }
    Some((&b[..end - 1], end + 1))
}

fn decimal(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

/// Parses one answer at the start of `b`: the answer and the bytes it took, or `None` when `b`
/// does not hold all of it yet.
pub fn parse(b: &[u8]) -> redis::RedisResult<Option<(Reply, usize)>> {
    let Some((kind, rest)) = b.split_first() else { return Ok(None) };
    let Some((text, used)) = line(rest) else { return Ok(None) };
    let used = used + 1;
    match kind {
        b'+' => Ok(Some((Reply::Status, used))),
        b'-' => match redis::parse_redis_value(&b[..used])? {
            redis::Value::ServerError(e) => Ok(Some((Reply::Error(e), used))),
            _ => Err(protocol("an error answer that does not read as one")),
        },
        b':' => Ok(Some((Reply::Int(decimal(text).ok_or_else(|| protocol("a bad integer answer"))?), used))),
        b'$' => {
            let len = decimal(text).ok_or_else(|| protocol("a bad bulk length"))?;
            if len < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let len = usize::try_from(len).map_err(|_| protocol("a bad bulk length"))?;
            let end =
                used.checked_add(len).and_then(|e| e.checked_add(2)).ok_or_else(|| protocol("a bad bulk length"))?;
            if b.len() < end {
                return Ok(None);
            }
            if &b[end - 2..end] != b"\r\n" {
                return Err(protocol("a bulk answer not ended by CRLF"));
            }
            Ok(Some((Reply::Bulk(decimal(&b[used..end - 2])), end)))
        }
        b'*' => {
            let n = decimal(text).ok_or_else(|| protocol("a bad array length"))?;
            if n < 0 {
                return Ok(Some((Reply::Nil, used)));
            }
            let mut items = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1024));
            let mut at = used;
            for _ in 0..n {
                match parse(&b[at..])? {
                    Some((r, u)) => {
                        items.push(r);
                        at += u;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), at)))
        }
        _ => Err(protocol("an answer of an unknown kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &[u8]) -> Vec<Reply> {
        let mut at = 0;
        let mut out = Vec::new();
        while let Some((r, u)) = parse(&b[at..]).unwrap() {
            out.push(r);
            at += u;
        }
        assert_eq!(at, b.len(), "all of it read");
        out
    }

    #[test]
    fn answers_of_each_kind_are_read() {
        let b = b"+OK\r\n:42\r\n$15\r\n1764160000000-7\r\n*2\r\n$10\r\n1764160000\r\n$6\r\n123456\r\n$-1\r\n:-3\r\n";
        assert_eq!(
            all(b),
            vec![
                Reply::Status,
                Reply::Int(42),
                Reply::Bulk(None),
                Reply::Array(vec![Reply::Bulk(Some(1764160000)), Reply::Bulk(Some(123456))]),
                Reply::Nil,
                Reply::Int(-3),
            ]
        );
    }

    #[test]
    fn an_error_answer_keeps_its_code_and_detail() {
        let b = b"-ERR The ID specified in XADD is equal or smaller than the target stream top item\r\n";
        let Some(Reply::Error(e)) = all(b).pop() else { panic!("one error") };
        assert_eq!(e.code(), "ERR");
        assert!(e.details().unwrap().contains("equal or smaller"));
        let Some(Reply::Error(e)) = all(b"-NOPERM no\r\n").pop() else { panic!("one error") };
        assert_eq!(e.code(), "NOPERM");
    }

    #[test]
    fn a_partial_answer_waits_for_more_at_every_cut() {
        let b = b"*3\r\n:1\r\n$5\r\nab\r\nc\r\n:0\r\n";
        for cut in 0..b.len() {
            assert_eq!(parse(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(b).unwrap().is_some());
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for b in [&b"?x\r\n"[..], b":abc\r\n", b"$-9x\r\n", b"$99999999999999999999\r\n", b"$2\r\nabcd\r\n", b"*x\r\n"]
        {
            assert!(parse(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn commands_encode_as_redis_reads_them() {
        let mut out = Vec::new();
        encode(&mut out, &[b"XADD", b"k", b"1-0"]);
        command(&mut out, 2);
        arg(&mut out, b"GET");
        int_arg(&mut out, -12);
        assert_eq!(out, b"*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$3\r\n1-0\r\n*2\r\n$3\r\nGET\r\n$3\r\n-12\r\n");
    }
}
