//! The request log: one JSON object per line, written and flushed before the response is
//! sent, so a client that has its answer can already read the line.
//!
//! Line schema:
//!   seq        number   1, 2, 3, ... over the server's life
//!   conn       number   TCP connection id (1, 2, ... in accept order): equal = same connection
//!   conn_seq   number   1 for a connection's first request, 2 for the second, ...
//!   peer       string   "127.0.0.1:PORT" of the client end of the connection
//!   tls        bool     https; client_cert: bool, a verified client certificate was given
//!   method     string   ("" if the request line could not be parsed)
//!   path       string   raw, not percent-decoded
//!   query      string   raw, not decoded ("" when there is none)
//!   headers    object   lowercased name -> value (repeated headers joined with ", ")
//!   body       string   request body as UTF-8 (lossy; cut at 64 KiB)
//!   status     number   the response status
//!   route      string|null  endpoint name (authresponse, smartcards, create-request, ...)
//!   info       object   what the endpoint did: key source and response, request id created,
//!                       final status set, injected fault, correlation id, error message ...

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::http::{ConnMeta, Rejected, Request};

const MAX_LOGGED_BODY: usize = 64 * 1024;

pub struct RequestLog {
    out: Option<Mutex<Box<dyn Write + Send>>>,
    seq: AtomicU64,
}

impl RequestLog {
    /// `None`: no log; `-`: stderr; else a file opened for appending.
    pub fn open(path: Option<&Path>) -> io::Result<RequestLog> {
        let out: Option<Box<dyn Write + Send>> = match path {
            None => None,
            Some(p) if p == Path::new("-") => Some(Box::new(io::stderr())),
            Some(p) => Some(Box::new(
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        };
        Ok(RequestLog {
            out: out.map(Mutex::new),
            seq: AtomicU64::new(0),
        })
    }

    fn write(&self, mut entry: Map<String, Value>) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        entry.insert("seq".into(), json!(seq));
        let Some(out) = &self.out else { return };
        let mut line = Value::Object(entry).to_string();
        line.push('\n');
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        // One write of the whole line, then flush; a failing log must not kill the server.
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }

    pub fn request(
        &self,
        req: &Request,
        conn: &ConnMeta,
        conn_seq: u64,
        status: u16,
        route: Option<&str>,
        info: Value,
    ) {
        let mut headers = Map::new();
        for (name, value) in &req.headers {
            match headers.get_mut(name) {
                Some(Value::String(s)) => {
                    s.push_str(", ");
                    s.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), json!(value));
                }
            }
        }
        let body = &req.body[..req.body.len().min(MAX_LOGGED_BODY)];
        let mut e = base(conn, conn_seq);
        e.insert("method".into(), json!(req.method));
        e.insert("path".into(), json!(req.path));
        e.insert("query".into(), json!(req.query.as_deref().unwrap_or("")));
        e.insert("headers".into(), Value::Object(headers));
        e.insert("body".into(), json!(String::from_utf8_lossy(body)));
        e.insert("status".into(), json!(status));
        e.insert("route".into(), json!(route));
        e.insert("info".into(), info);
        self.write(e);
    }

    /// A request the HTTP layer refused (too long, malformed ...).
    pub fn rejected(&self, r: &Rejected, conn: &ConnMeta, conn_seq: u64, status: u16) {
        let (path, query) = match r.target.as_deref().map(|t| t.split_once('?')) {
            Some(Some((p, q))) => (p.to_string(), q.to_string()),
            Some(None) => (r.target.clone().unwrap_or_default(), String::new()),
            None => (String::new(), String::new()),
        };
        let mut e = base(conn, conn_seq);
        e.insert("method".into(), json!(r.method.as_deref().unwrap_or("")));
        e.insert("path".into(), json!(path));
        e.insert("query".into(), json!(query));
        e.insert("headers".into(), json!({}));
        e.insert("body".into(), json!(""));
        e.insert("status".into(), json!(status));
        e.insert("route".into(), Value::Null);
        e.insert("info".into(), json!({"error": r.reason}));
        self.write(e);
    }
}

fn base(conn: &ConnMeta, conn_seq: u64) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("conn".into(), json!(conn.id));
    e.insert("conn_seq".into(), json!(conn_seq));
    e.insert("peer".into(), json!(conn.peer.to_string()));
    e.insert("tls".into(), json!(conn.tls));
    e.insert("client_cert".into(), json!(conn.client_cert));
    e
}
