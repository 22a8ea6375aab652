//! A small HTTP/1.1 server core: one thread per TCP connection, keep-alive, optional TLS.
//!
//! Written for the test server rather than taken from a crate so that the things tests assert
//! on are under our control: a stable connection id per TCP connection (to prove keep-alive
//! reuse), strict size limits (no panics or unbounded buffers on hostile input), mutual TLS,
//! and a request log entry that is written *before* the response leaves (so a test that has
//! its response can read the log line without racing).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Longest request line (method, target, version): http.sys answers 414 past 16 KiB too.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Longest single header line.
pub const MAX_HEADER_LINE: usize = 16 * 1024;
/// All header lines together.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 100;
/// Largest request body accepted (the CM API only takes small JSON documents).
pub const MAX_BODY: usize = 1024 * 1024;
/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent (origin form).
    pub target: String,
    /// The path part of the target, raw (not percent-decoded).
    pub path: String,
    /// The raw query string after '?', not decoded; `None` when the target has no '?'.
    pub query: Option<String>,
    /// (major, minor)
    pub version: (u8, u8),
    /// Header names lowercased, in arrival order; repeated headers stay separate.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, header: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(header))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; 1.0 only with `keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version >= (1, 1) {
            !self.has_token("connection", "close")
        } else {
            self.has_token("connection", "keep-alive")
        }
    }
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Extra headers (Content-Length, Date, Server and Connection are added when written).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::raw_json(status, value.to_string().into_bytes())
    }

    /// A body that is sent as `application/json` whatever it holds (for malformed replies).
    pub fn raw_json(status: u16, body: Vec<u8>) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body)
    }

    pub fn html(status: u16, body: &str) -> Response {
        Response::new(status)
            .header("Content-Type", "text/html")
            .body(body.as_bytes().to_vec())
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// What the server knows about one TCP connection.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// 1, 2, 3, ... in accept order: equal ids mean one shared TCP connection.
    pub id: u64,
    pub peer: SocketAddr,
    pub tls: bool,
    /// A client certificate was presented and verified (mutual TLS).
    pub client_cert: bool,
}

/// A request the HTTP layer refused before it could be routed.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub status: u16,
    pub reason: String,
    /// Whatever was parsed before the error (method and target), for the log.
    pub method: Option<String>,
    pub target: Option<String>,
}

/// The application behind the HTTP layer.
pub trait Service: Send + Sync {
    /// Answer one request. `conn_seq` counts requests on this connection from 1.
    fn handle(&self, req: &Request, conn: &ConnMeta, conn_seq: u64) -> Response;
    /// Called for a request that was refused by the HTTP layer (it gets `response`).
    fn rejected(&self, rejected: &Rejected, conn: &ConnMeta, conn_seq: u64, response: &Response);
}

/// A plain or TLS connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Set up the connection (TLS handshake if configured) and serve requests until the client
/// closes, asks to close, times out or sends something unparseable.
pub fn serve_connection(
    tcp: TcpStream,
    id: u64,
    tls: Option<Arc<rustls::ServerConfig>>,
    service: &dyn Service,
) -> io::Result<()> {
    let peer = tcp.peer_addr()?;
    let _ = tcp.set_nodelay(true);
    tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (stream, client_cert) = match tls {
        None => (Stream::Plain(tcp), false),
        Some(config) => {
            let mut tcp = tcp;
            tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
            let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp)?;
            }
            let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
            (
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
                client_cert,
            )
        }
    };
    stream.tcp().set_read_timeout(Some(IDLE_TIMEOUT))?;
    let meta = ConnMeta {
        id,
        peer,
        tls: matches!(stream, Stream::Tls(_)),
        client_cert,
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    let mut conn_seq = 0u64;
    loop {
        match read_request(&mut reader) {
            Ok(None) => break,
            Ok(Some(req)) => {
                conn_seq += 1;
                let keep = req.keep_alive();
                let response = service.handle(&req, &meta, conn_seq);
                let head = req.method == "HEAD";
                if let Err(e) = write_response(reader.get_mut(), &response, head, keep, req.version)
                {
                    // A client that gave up (a timeout test) is not a server problem.
                    return if benign(&e) { Ok(()) } else { Err(e) };
                }
                if !keep {
                    break;
                }
            }
            Err(ReadError::Io(e)) => {
                close(reader.into_inner());
                return if benign(&e) { Ok(()) } else { Err(e) };
            }
            Err(ReadError::Bad(rejected)) => {
                conn_seq += 1;
                let response = Response::html(
                    rejected.status,
                    &format!(
                        "<html><body><h2>{} - {}</h2><p>{}</p></body></html>",
                        rejected.status,
                        reason(rejected.status),
                        html_escape(&rejected.reason)
                    ),
                );
                service.rejected(&rejected, &meta, conn_seq, &response);
                let _ = write_response(reader.get_mut(), &response, false, false, (1, 1));
                linger_close(reader.into_inner());
                return Ok(());
            }
        }
    }
    close(reader.into_inner());
    Ok(())
}

/// Errors that just mean the client went away or idled out.
fn benign(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | WouldBlock | TimedOut | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Close after an error response: stop writing, then drain what the client still sends for a
/// moment, so that the kernel does not answer unread data with a reset that would destroy the
/// error response before the client reads it.
fn linger_close(mut stream: Stream) {
    if let Stream::Tls(s) = &mut stream {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let tcp = stream.tcp();
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
    let mut sink = [0u8; 8192];
    let mut drained = 0usize;
    let mut raw = tcp;
    while drained < 4 * 1024 * 1024 {
        match raw.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn close(mut stream: Stream) {
    if let Stream::Tls(s) = &mut stream {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let _ = stream.tcp().shutdown(Shutdown::Both);
}

pub enum ReadError {
    /// The connection failed or timed out: nothing can be answered.
    Io(io::Error),
    /// The request is invalid: answer with this status and close.
    Bad(Rejected),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn bad(status: u16, reason: &str, method: Option<&str>, target: Option<&str>) -> ReadError {
    ReadError::Bad(Rejected {
        status,
        reason: reason.to_string(),
        method: method.map(str::to_string),
        target: target.map(|t| t.chars().take(512).collect()),
    })
}

enum Line {
    Eof,
    TooLong,
    Text(Vec<u8>),
}

/// Read one line (up to and without the CRLF), never buffering more than `max` bytes.
fn read_line<R: BufRead>(reader: &mut R, max: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(max as u64 + 2)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > max {
            return Ok(Line::TooLong);
        }
        // The peer closed in the middle of a line.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.len() > max {
        return Ok(Line::TooLong);
    }
    Ok(Line::Text(buf))
}

/// Read and parse one request. `Ok(None)`: the client closed the connection between requests.
pub fn read_request(reader: &mut BufReader<Stream>) -> Result<Option<Request>, ReadError> {
    // Tolerate a few empty lines before the request line (RFC 9112 section 2.2).
    let mut line = Vec::new();
    for _ in 0..8 {
        match read_line(reader, MAX_REQUEST_LINE)? {
            Line::Eof => return Ok(None),
            Line::TooLong => return Err(bad(414, "request line too long", None, None)),
            Line::Text(l) if l.is_empty() => continue,
            Line::Text(l) => {
                line = l;
                break;
            }
        }
    }
    if line.is_empty() {
        return Err(bad(400, "no request line", None, None));
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Err(bad(400, "malformed request line", None, None)),
    };
    if !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        return Err(bad(400, "malformed method", None, Some(target)));
    }
    let version = match version {
        "HTTP/1.1" => (1, 1),
        "HTTP/1.0" => (1, 0),
        v if v.starts_with("HTTP/") => {
            return Err(bad(
                505,
                "HTTP version not supported",
                Some(method),
                Some(target),
            ))
        }
        _ => {
            return Err(bad(
                400,
                "malformed HTTP version",
                Some(method),
                Some(target),
            ))
        }
    };
    // Origin form; an absolute form (as sent to proxies) is reduced to its path.
    let origin = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        target
    };
    if !origin.starts_with('/') {
        return Err(bad(
            400,
            "malformed request target",
            Some(method),
            Some(target),
        ));
    }
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (origin.to_string(), None),
    };
    // Drop a fragment, should a client send one.
    let path = path.split('#').next().unwrap_or("").to_string();

    let mut headers: Vec<(String, String)> = Vec::new();
    let mut header_bytes = 0usize;
    loop {
        let l = match read_line(reader, MAX_HEADER_LINE)? {
            Line::Eof => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in headers",
                )))
            }
            Line::TooLong => {
                return Err(bad(431, "header line too long", Some(method), Some(target)))
            }
            Line::Text(l) => l,
        };
        if l.is_empty() {
            break;
        }
        header_bytes += l.len();
        if header_bytes > MAX_HEADER_BYTES || headers.len() >= MAX_HEADERS {
            return Err(bad(
                431,
                "too many header bytes",
                Some(method),
                Some(target),
            ));
        }
        if l[0] == b' ' || l[0] == b'\t' {
            return Err(bad(
                400,
                "obsolete header line folding",
                Some(method),
                Some(target),
            ));
        }
        let l = String::from_utf8_lossy(&l);
        let Some((name, value)) = l.split_once(':') else {
            return Err(bad(
                400,
                "malformed header line",
                Some(method),
                Some(target),
            ));
        };
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad(
                400,
                "malformed header name",
                Some(method),
                Some(target),
            ));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    let mut req = Request {
        method: method.to_string(),
        target: origin.to_string(),
        path,
        query,
        version,
        headers,
        body: Vec::new(),
    };

    let chunked = req
        .headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .any(|(_, v)| v.to_ascii_lowercase().contains("chunked"));
    let lengths: Vec<&str> = req
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let m = Some(method);
    let t = Some(target);
    if chunked && !lengths.is_empty() {
        return Err(bad(400, "both Content-Length and chunked", m, t));
    }
    let length = match lengths.as_slice() {
        [] => None,
        [one] => match one.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return Err(bad(400, "invalid Content-Length", m, t)),
        },
        [first, rest @ ..] => {
            if rest.iter().all(|r| r == first) {
                first.parse::<u64>().ok()
            } else {
                return Err(bad(400, "conflicting Content-Length", m, t));
            }
        }
    };
    if let Some(n) = length {
        if n > MAX_BODY as u64 {
            return Err(bad(413, "request body too large", m, t));
        }
    }
    let has_body = chunked || length.is_some_and(|n| n > 0);
    if has_body && req.has_token("expect", "100-continue") {
        let out = reader.get_mut();
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        out.flush()?;
    }
    if chunked {
        req.body = read_chunked(reader, m, t)?;
    } else if let Some(n) = length {
        let mut body = vec![0u8; n as usize];
        reader.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(Some(req))
}

fn read_chunked(
    reader: &mut BufReader<Stream>,
    m: Option<&str>,
    t: Option<&str>,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = match read_line(reader, 1024)? {
            Line::Text(l) => l,
            Line::TooLong => return Err(bad(400, "chunk size line too long", m, t)),
            Line::Eof => {
                return Err(ReadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in chunked body",
                )))
            }
        };
        let line = String::from_utf8_lossy(&line);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Err(bad(400, "invalid chunk size", m, t));
        };
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                match read_line(reader, MAX_HEADER_LINE)? {
                    Line::Text(l) if l.is_empty() => return Ok(body),
                    Line::Text(_) => continue,
                    Line::TooLong => return Err(bad(431, "trailer too long", m, t)),
                    Line::Eof => return Ok(body),
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(bad(413, "request body too large", m, t));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad(400, "malformed chunk", m, t));
        }
    }
}

/// Serialize and send one response in a single write.
pub fn write_response(
    out: &mut Stream,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
    version: (u8, u8),
) -> io::Result<()> {
    let mut text = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    let no_body_status = resp.status == 204 || resp.status == 304 || resp.status < 200;
    for (name, value) in &resp.headers {
        // Header values come from our own code; refuse to emit CR/LF all the same.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !no_body_status {
        text.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    text.push_str("Server: Microsoft-IIS/10.0\r\n");
    text.push_str("X-Powered-By: ASP.NET\r\n");
    text.push_str(&format!(
        "Date: {}\r\n",
        crate::util::http_date(std::time::SystemTime::now())
    ));
    if !keep_alive {
        text.push_str("Connection: close\r\n");
    } else if version < (1, 1) {
        text.push_str("Connection: keep-alive\r\n");
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    if !head_only && !no_body_status {
        bytes.extend_from_slice(&resp.body);
    }
    out.write_all(&bytes)?;
    out.flush()
}
