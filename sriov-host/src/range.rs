//! Index lists such as `"0-3,6"`: VF ranges in `pfNames`/`rootDevices` selectors and in `provision`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of VF indexes written as a comma-separated list of indexes and inclusive ranges.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct IndexSet(BTreeSet<u32>);

/// The largest index we accept: far above any NIC's VF count, small enough to reject typos.
pub const MAX_INDEX: u32 = 4095;

/// An index list that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VF index list {input:?}: {reason} (expected indexes and inclusive ranges like \"0-3,6\", each 0..={MAX_INDEX})")]
pub struct IndexSetError {
    /// The list as given.
    pub input: String,
    /// Which item was wrong and why.
    pub reason: String,
}

impl IndexSet {
    /// Whether the index is in the set.
    pub fn contains(&self, i: u32) -> bool {
        self.0.contains(&i)
    }
    /// The indexes, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
    /// How many indexes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the set is empty (an empty list string).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The largest index, `None` when empty.
    pub fn max(&self) -> Option<u32> {
        self.0.last().copied()
    }
}

impl FromIterator<u32> for IndexSet {
    fn from_iter<T: IntoIterator<Item = u32>>(iter: T) -> Self {
        IndexSet(iter.into_iter().collect())
    }
}

impl FromStr for IndexSet {
    type Err = IndexSetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| IndexSetError {
            input: s.to_string(),
            reason,
        };
        let num = |t: &str| -> Result<u32, IndexSetError> {
            let t = t.trim();
            let n: u32 = t
                .parse()
                .map_err(|_| err(format!("{t:?} is not a number")))?;
            if n > MAX_INDEX {
                return Err(err(format!("{n} is out of range")));
            }
            Ok(n)
        };
        // Collected as a bitmap, a range a word at a time: the work is linear in the text, not
        // in the sum of the ranges' spans ("0-4095" repeated is cheap).
        let mut bits = Bitmap::default();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(err("empty element".into()));
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (num(a)?, num(b)?);
                    if a > b {
                        return Err(err(format!("range {a}-{b} is reversed")));
                    }
                    bits.set(a, b);
                }
                None => {
                    let n = num(part)?;
                    bits.set(n, n);
                }
            }
        }
        Ok(IndexSet(bits.iter().collect()))
    }
}

/// Indexes `0..=MAX_INDEX` as bits.
struct Bitmap([u64; (MAX_INDEX as usize + 1) / 64]);

impl Default for Bitmap {
    fn default() -> Self {
        Bitmap([0; (MAX_INDEX as usize + 1) / 64])
    }
}

impl Bitmap {
    /// Set `a..=b` (both at most [`MAX_INDEX`]).
    fn set(&mut self, a: u32, b: u32) {
        let (a, b) = (a as usize, b as usize);
        for w in a / 64..=b / 64 {
            let lo = if w == a / 64 { a % 64 } else { 0 };
            let hi = if w == b / 64 { b % 64 } else { 63 };
            self.0[w] |= (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            (0..64)
                .filter(move |i| word & (1 << i) != 0)
                .map(move |i| (w * 64 + i) as u32)
        })
    }
}

impl fmt::Display for IndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let v: Vec<u32> = self.iter().collect();
        let mut i = 0;
        while i < v.len() {
            let mut j = i;
            while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                j += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if j > i {
                write!(f, "{}-{}", v[i], v[j])?;
            } else {
                write!(f, "{}", v[i])?;
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for IndexSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        let s: IndexSet = "0-2,5, 7".parse().unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 2, 5, 7]);
        assert_eq!(s.to_string(), "0-2,5,7");
        assert_eq!("3".parse::<IndexSet>().unwrap().to_string(), "3");
    }

    #[test]
    fn rejects_bad_lists_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("1,,2", "empty"),
            ("3-1", "reversed"),
            ("a", "not a number"),
            ("0-99999", "out of range"),
            ("-1", "not a number"),
        ] {
            let e = bad.parse::<IndexSet>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn overlapping_ranges_cost_their_length_not_their_span() {
        // 100,000 copies of the widest range: 700 KB of config, parsed in well under a second.
        let s = "0-4095,".repeat(100_000) + "7";
        let t = std::time::Instant::now();
        let set: IndexSet = s.parse().unwrap();
        let took = t.elapsed();
        assert_eq!(set.len(), 4096);
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        let set: IndexSet = "4000-4095,0,63-64,127-129".parse().unwrap();
        assert_eq!(set.to_string(), "0,63-64,127-129,4000-4095");
    }
}
