//! A small parser for the Prometheus / OpenMetrics text exposition format, and an HTTP GET over
//! plain TCP, for tests that scrape a metrics endpoint.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: samples plus the `# TYPE` and `# HELP` lines by metric family.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
    pub help: BTreeMap<String, String>,
    /// Whether the OpenMetrics `# EOF` terminator was present.
    pub eof: bool,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every `(key, value)` of `labels`
    /// and no other label.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Every sample named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// Parse the text format; an error names the offending line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if rest == "EOF" {
                out.eof = true;
                continue;
            }
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().ok_or_else(|| bad("no metric name"))?;
            let val = parts.next().unwrap_or_default().to_string();
            match kind {
                "TYPE" => {
                    out.types.insert(name.to_string(), val);
                }
                "HELP" => {
                    out.help.insert(name.to_string(), val);
                }
                _ => {}
            }
            continue;
        }
        if out.eof {
            return Err(bad("content after # EOF"));
        }
        let (name, labels, rest) = match line.find('{') {
            Some(i) => {
                let close = line.rfind('}').ok_or_else(|| bad("unclosed labels"))?;
                (
                    &line[..i],
                    parse_labels(&line[i + 1..close]).map_err(|e| bad(&e))?,
                    &line[close + 1..],
                )
            }
            None => {
                let i = line.find(' ').ok_or_else(|| bad("no value"))?;
                (&line[..i], BTreeMap::new(), &line[i..])
            }
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(bad("bad metric name"));
        }
        let v = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            _ => v.parse().map_err(|_| bad("bad value"))?,
        };
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next() != Some('"') {
            return Err(format!("label {key}: value not quoted"));
        }
        let mut val = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(c) => val.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some('"') => break,
                Some(c) => val.push(c),
                None => return Err(format!("label {key}: unterminated value")),
            }
        }
        out.insert(key, val);
    }
}

/// `GET path` over HTTP/1.1 on `addr`; returns the status code, the content type and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, ctype, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_metadata() {
        let e = parse(
            "# HELP a_total Things.\n# TYPE a counter\na_total{x=\"1\",y=\"q\\\"z\"} 3\nb 2.5\n# EOF\n",
        )
        .unwrap();
        assert!(e.eof);
        assert_eq!(e.types["a"], "counter");
        assert_eq!(e.value("a_total", &[("x", "1"), ("y", "q\"z")]), Some(3.0));
        assert_eq!(e.value("b", &[]), Some(2.5));
        assert!(parse("a{x=1} 2").is_err());
        assert!(parse("a x").is_err());
    }
}
