//! The hand-walked JSON of the config file: type checks whose errors say what was expected and
//! what was found, and unknown keys reported with the closest known one. Shared by
//! [`crate::config`], [`crate::selectors`] and [`crate::provision_config`].

use serde_json::{Map, Value};

/// A problem with one key of the config file: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct KeyError {
    /// The key's path from the level the caller parsed, e.g. `provision[0].numVfs`.
    pub key: String,
    /// What is wrong and what was expected, e.g. `missing: expected a VF count`.
    pub problem: String,
}

impl KeyError {
    /// A problem `problem` at `key`.
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The same problem with its key placed under `parent` (`selectors[1]` + `vendors` =
    /// `selectors[1].vendors`; an empty key, the value itself, becomes `parent`).
    pub(crate) fn under(self, parent: &str) -> KeyError {
        let key = if self.key.is_empty() {
            parent.to_string()
        } else {
            format!("{parent}.{}", self.key)
        };
        KeyError { key, ..self }
    }
}

/// Reject keys outside `known`, suggesting the closest known one.
pub(crate) fn check_keys(obj: &Map<String, Value>, known: &[&str]) -> Result<(), KeyError> {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            let problem = match closest(k, known) {
                Some(s) => format!("unknown key (did you mean {s:?}?)"),
                None => format!("unknown key (known keys: {})", known.join(", ")),
            };
            return Err(KeyError::new(k.clone(), problem));
        }
    }
    Ok(())
}

/// The known key nearest to `k` by edit distance (case-insensitive), when it is close enough to
/// be a plausible typo.
fn closest<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let lk = k.to_ascii_lowercase();
    known
        .iter()
        .map(|c| (edit_distance(&lk, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(crate) fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

pub(crate) fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, got {}", kind(v)))
}

pub(crate) fn as_bool(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, got {}", kind(v)))
}

/// A list of strings; a single string is accepted as a one-element list.
pub(crate) fn str_list(v: &Value) -> Result<Vec<&str>, String> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| format!("expected a list of strings, found {}", kind(x)))
            })
            .collect(),
        other => Err(format!("expected a list of strings, got {}", kind(other))),
    }
}

/// `obj` with upstream's key matching: upstream decodes with Go's `encoding/json`, which takes a
/// key that differs from a field name only in case as that field, so `IsRdma`, `NeedVhostNet` or
/// `resourcelist` mean `isRdma`, `needVhostNet`, `resourceList` here too. Keys in `ignored`
/// (any case) are dropped. Two spellings of one key, or a key that is not known in any case, are
/// errors.
pub(crate) fn upstream_keys(
    obj: &Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
) -> Result<Map<String, Value>, KeyError> {
    let mut out = Map::new();
    for (k, v) in obj {
        if ignored.iter().any(|i| i.eq_ignore_ascii_case(k)) {
            continue;
        }
        let key = known
            .iter()
            .find(|c| c.eq_ignore_ascii_case(k))
            .map_or(k.as_str(), |c| *c);
        if out.contains_key(key) {
            return Err(KeyError::new(
                k.clone(),
                format!("given twice, as {key:?} in another case: keep one"),
            ));
        }
        out.insert(key.to_string(), v.clone());
    }
    check_keys(&out, known)?;
    Ok(out)
}
