//! Routing: path matching (case-insensitive, as IIS does) and query-string parsing.
//!
//! Everything lives under `/CertificateManagement/api/v1.0` in any case. Path segments are
//! percent-decoded one by one; query values are decoded the way ASP.NET does it, where '+'
//! means a space: a client that forgets to escape '+' in a base64 challenge breaks, as it
//! would against the real server.

use crate::util::normalize_id;

/// The API prefix, lowercase, as path segments.
pub const API_PREFIX: [&str; 3] = ["certificatemanagement", "api", "v1.0"];

/// A matched resource (before looking at the method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// /smartcards
    Smartcards,
    /// /smartcards/{scid}
    Smartcard { scid: String },
    /// /smartcards/{scid}/operations
    Operations { scid: String },
    /// /requests
    Requests,
    /// /requests/{id}
    Request { id: String },
    /// /requests/{reqid}/smartcards/{scid}/authenticationresponse
    AuthResponse { reqid: String, scid: String },
    /// /requests/{reqid}/smartcards/{scid}/diversifiedkey
    DiversifiedKey { reqid: String, scid: String },
}

/// A route and method together: the unit that handlers, faults and the log talk about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    AuthResponse,
    DiversifiedKey,
    Smartcards,
    Smartcard,
    Operations,
    ListRequests,
    CreateRequest,
    GetRequest,
    PutRequest,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::AuthResponse,
        Endpoint::DiversifiedKey,
        Endpoint::Smartcards,
        Endpoint::Smartcard,
        Endpoint::Operations,
        Endpoint::ListRequests,
        Endpoint::CreateRequest,
        Endpoint::GetRequest,
        Endpoint::PutRequest,
    ];

    /// The name used in the log ("route") and on the command line (`--fail NAME=CODE`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::AuthResponse => "authresponse",
            Endpoint::DiversifiedKey => "diversifiedkey",
            Endpoint::Smartcards => "smartcards",
            Endpoint::Smartcard => "smartcard",
            Endpoint::Operations => "operations",
            Endpoint::ListRequests => "list-requests",
            Endpoint::CreateRequest => "create-request",
            Endpoint::GetRequest => "get-request",
            Endpoint::PutRequest => "put-request",
        }
    }

    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }
}

impl Route {
    /// The endpoint for `method`, or `None` (405) with the methods that are allowed.
    pub fn endpoint(&self, method: &str) -> Result<Endpoint, &'static str> {
        let get = method == "GET" || method == "HEAD";
        match self {
            Route::Smartcards if get => Ok(Endpoint::Smartcards),
            Route::Smartcards => Err("GET"),
            Route::Smartcard { .. } if get => Ok(Endpoint::Smartcard),
            Route::Smartcard { .. } => Err("GET"),
            Route::Operations { .. } if get => Ok(Endpoint::Operations),
            Route::Operations { .. } => Err("GET"),
            Route::Requests if get => Ok(Endpoint::ListRequests),
            Route::Requests if method == "POST" => Ok(Endpoint::CreateRequest),
            Route::Requests => Err("GET, POST"),
            Route::Request { .. } if get => Ok(Endpoint::GetRequest),
            Route::Request { .. } if method == "PUT" => Ok(Endpoint::PutRequest),
            Route::Request { .. } => Err("GET, PUT"),
            Route::AuthResponse { .. } if get => Ok(Endpoint::AuthResponse),
            Route::AuthResponse { .. } => Err("GET"),
            Route::DiversifiedKey { .. } if get => Ok(Endpoint::DiversifiedKey),
            Route::DiversifiedKey { .. } => Err("GET"),
        }
    }
}

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Not under the API prefix at all (IIS would answer with its own 404 page).
    OutsideApi,
    /// Under the prefix but no such resource (Web API's JSON 404).
    NoRoute,
    Route(Route),
}

/// Match a raw (not decoded) path. Literal segments compare case-insensitively; id segments
/// are percent-decoded and normalized (braces dropped, lowercase). Empty segments (double or
/// trailing slashes) are ignored.
pub fn match_path(raw_path: &str) -> PathMatch {
    let segs: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    if segs.len() < API_PREFIX.len()
        || !segs
            .iter()
            .zip(API_PREFIX)
            .all(|(s, p)| s.eq_ignore_ascii_case(p))
    {
        return PathMatch::OutsideApi;
    }
    let rest: Vec<&str> = segs[API_PREFIX.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    let lit = |s: &str, l: &str| s.eq_ignore_ascii_case(l);
    let id = |s: &str| normalize_id(s);
    let route = match rest.as_slice() {
        [a] if lit(a, "smartcards") => Route::Smartcards,
        [a, s] if lit(a, "smartcards") => Route::Smartcard { scid: id(s) },
        [a, s, b] if lit(a, "smartcards") && lit(b, "operations") => {
            Route::Operations { scid: id(s) }
        }
        [a] if lit(a, "requests") => Route::Requests,
        [a, r] if lit(a, "requests") => Route::Request { id: id(r) },
        [a, r, b, s, c] if lit(a, "requests") && lit(b, "smartcards") => {
            if lit(c, "authenticationresponse") {
                Route::AuthResponse {
                    reqid: id(r),
                    scid: id(s),
                }
            } else if lit(c, "diversifiedkey") {
                Route::DiversifiedKey {
                    reqid: id(r),
                    scid: id(s),
                }
            } else {
                return PathMatch::NoRoute;
            }
        }
        _ => return PathMatch::NoRoute,
    };
    PathMatch::Route(route)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode %XX escapes (invalid escapes are kept as they are, as .NET does); with
/// `plus_as_space`, '+' becomes ' ' (form/query decoding). Invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parsed query string: decoded (name, value) pairs in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `name` (names compare case-insensitively, as ASP.NET binds them).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// .NET's bool.Parse: "true"/"false" in any case, surrounding spaces allowed.
pub fn parse_bool(s: &str) -> Option<bool> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &str = "a9b4b42c-cc50-4c9b-89d1-bbc0bcd5a099";
    const SC: &str = "17cf063d-e337-4aa9-a822-346554ddd3c9";

    #[test]
    fn docs_example_path_any_case() {
        for prefix in [
            "/CertificateManagement/api/v1.0",
            "/certificatemanagement/api/v1.0",
            "/CERTIFICATEMANAGEMENT/API/V1.0",
        ] {
            let p = format!("{prefix}/requests/{REQ}/smartcards/{SC}/authenticationresponse");
            assert_eq!(
                match_path(&p),
                PathMatch::Route(Route::AuthResponse {
                    reqid: REQ.into(),
                    scid: SC.into()
                }),
                "{p}"
            );
            let p = format!("{prefix}/Requests/{REQ}/SmartCards/{SC}/AuthenticationResponse");
            assert!(matches!(
                match_path(&p),
                PathMatch::Route(Route::AuthResponse { .. })
            ));
        }
    }

    #[test]
    fn ids_are_normalized_and_decoded() {
        let p = format!(
            "/CertificateManagement/api/v1.0/smartcards/%7B{}%7D/operations",
            SC.to_uppercase()
        );
        assert_eq!(
            match_path(&p),
            PathMatch::Route(Route::Operations { scid: SC.into() })
        );
    }

    #[test]
    fn all_routes() {
        let b = "/CertificateManagement/api/v1.0";
        let m = |p: &str| match_path(&format!("{b}{p}"));
        assert_eq!(m("/smartcards"), PathMatch::Route(Route::Smartcards));
        assert_eq!(m("/smartcards/"), PathMatch::Route(Route::Smartcards));
        assert_eq!(
            m("/smartcards/x"),
            PathMatch::Route(Route::Smartcard { scid: "x".into() })
        );
        assert_eq!(m("/requests"), PathMatch::Route(Route::Requests));
        assert_eq!(
            m("//requests//R1/"),
            PathMatch::Route(Route::Request { id: "r1".into() })
        );
        assert_eq!(
            m("/requests/r/smartcards/s/DIVERSIFIEDKEY"),
            PathMatch::Route(Route::DiversifiedKey {
                reqid: "r".into(),
                scid: "s".into()
            })
        );
        assert_eq!(m("/requests/r/smartcards/s/other"), PathMatch::NoRoute);
        assert_eq!(m("/profiletemplates"), PathMatch::NoRoute);
        assert_eq!(m(""), PathMatch::NoRoute);
        assert_eq!(match_path("/"), PathMatch::OutsideApi);
        assert_eq!(
            match_path("/CertificateManagement/api"),
            PathMatch::OutsideApi
        );
        assert_eq!(match_path("/api/v1.0/smartcards"), PathMatch::OutsideApi);
        assert_eq!(match_path("/%%%/%zz"), PathMatch::OutsideApi);
    }

    #[test]
    fn methods() {
        assert_eq!(
            Route::Requests.endpoint("POST"),
            Ok(Endpoint::CreateRequest)
        );
        assert_eq!(Route::Requests.endpoint("GET"), Ok(Endpoint::ListRequests));
        assert_eq!(Route::Requests.endpoint("DELETE"), Err("GET, POST"));
        let r = Route::Request { id: "x".into() };
        assert_eq!(r.endpoint("PUT"), Ok(Endpoint::PutRequest));
        assert_eq!(r.endpoint("HEAD"), Ok(Endpoint::GetRequest));
        assert_eq!(r.endpoint("get"), Err("GET, PUT"));
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_name(e.name()), Some(e));
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("1hFD%2Bcz%2F0so%3D", true), "1hFD+cz/0so=");
        assert_eq!(percent_decode("1hFD%2bcz%2f0so%3d", true), "1hFD+cz/0so=");
        // An unescaped '+' is a space in a query, as in ASP.NET.
        assert_eq!(percent_decode("1hFD+cz/0so=", true), "1hFD cz/0so=");
        assert_eq!(percent_decode("a+b", false), "a+b");
        // Invalid or truncated escapes stay as they are; nothing panics.
        assert_eq!(percent_decode("%", true), "%");
        assert_eq!(percent_decode("%4", true), "%4");
        assert_eq!(percent_decode("%zz%41", true), "%zzA");
        assert_eq!(percent_decode("abc%41", true), "abcA");
        assert_eq!(percent_decode("%C3%A9", false), "\u{e9}");
        assert_eq!(percent_decode("%FF", false), "\u{fffd}");
    }

    #[test]
    fn query_parsing() {
        let raw = "cardid=bc88f13f-83ba-4037-8262-46eba1291c6e&challenge=1hFD%2Bcz%2F0so%3D\
                   &diversified=False";
        let q = Query::parse(Some(raw));
        assert_eq!(
            q.get("cardid"),
            Some("bc88f13f-83ba-4037-8262-46eba1291c6e")
        );
        assert_eq!(q.get("CHALLENGE"), Some("1hFD+cz/0so="));
        assert_eq!(q.get("diversified").and_then(parse_bool), Some(false));
        assert_eq!(q.get("atr"), None);
        let q = Query::parse(Some("a=1&a=2&&b&c="));
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get("c"), Some(""));
        assert_eq!(Query::parse(None), Query::default());
        let huge = "x=".to_string() + &"%2B".repeat(100_000);
        assert_eq!(
            Query::parse(Some(&huge)).get("x").map(str::len),
            Some(100_000)
        );
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("FALSE"), Some(false));
        assert_eq!(parse_bool(" true "), Some(true));
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_bool(""), None);
    }
}
