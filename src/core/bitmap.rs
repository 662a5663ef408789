//! A compact set of indexes (bit `i` set = index `i` in the set), carried in
//! objects as base64. A year of minutely sessions fits in 66 KiB of bits.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bitmap {
    bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session bitmap is not valid base64: {0}")]
pub struct BitmapError(String);

impl Bitmap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, index: u64) {
        let byte = (index / 8) as usize;
        if byte >= self.bytes.len() {
            self.bytes.resize(byte + 1, 0);
        }
        self.bytes[byte] |= 1 << (index % 8);
    }

    pub fn remove(&mut self, index: u64) {
        if let Some(b) = self.bytes.get_mut((index / 8) as usize) {
            *b &= !(1 << (index % 8));
        }
    }

    pub fn contains(&self, index: u64) -> bool {
        self.bytes
            .get((index / 8) as usize)
            .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// How many indexes at or after `from` are in the set.
    pub fn len_from(&self, from: u64) -> u64 {
        let first = (from / 8) as usize;
        let Some(head) = self.bytes.get(first) else {
            return 0;
        };
        let head = u64::from((head >> (from % 8)).count_ones());
        head + self.bytes[first + 1..]
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(|&b| b == 0)
    }

    /// The indexes in the set, ascending.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.bytes.iter().enumerate().flat_map(|(i, &b)| {
            (0..8u64)
                .filter(move |bit| b & (1 << bit) != 0)
                .map(move |bit| i as u64 * 8 + bit)
        })
    }

    /// Adds every index of `other`.
    pub fn union_with(&mut self, other: &Bitmap) {
        if other.bytes.len() > self.bytes.len() {
            self.bytes.resize(other.bytes.len(), 0);
        }
        for (a, b) in self.bytes.iter_mut().zip(&other.bytes) {
            *a |= b;
        }
    }

    pub fn encode(&self) -> String {
        let used = self
            .bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        STANDARD.encode(&self.bytes[..used])
    }

    pub fn decode(text: &str) -> Result<Self, BitmapError> {
        STANDARD
            .decode(text.trim())
            .map(|bytes| Self { bytes })
            .map_err(|e| BitmapError(e.to_string()))
    }
}

impl FromIterator<u64> for Bitmap {
    fn from_iter<T: IntoIterator<Item = u64>>(iter: T) -> Self {
        let mut b = Bitmap::new();
        for i in iter {
            b.insert(i);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_through_base64(indexes in proptest::collection::btree_set(0u64..5_000, 0..300)) {
            let b: Bitmap = indexes.iter().copied().collect();
            let back = Bitmap::decode(&b.encode()).unwrap();
            prop_assert_eq!(back.iter().collect::<Vec<_>>(), indexes.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(back.len(), indexes.len() as u64);
        }

        #[test]
        fn union_is_the_set_union(a in proptest::collection::btree_set(0u64..2_000, 0..100),
                                  b in proptest::collection::btree_set(0u64..2_000, 0..100)) {
            let mut x: Bitmap = a.iter().copied().collect();
            x.union_with(&b.iter().copied().collect());
            let want: Vec<u64> = a.union(&b).copied().collect();
            prop_assert_eq!(x.iter().collect::<Vec<_>>(), want);
        }

        #[test]
        fn len_from_counts_the_indexes_from_there(indexes in proptest::collection::btree_set(0u64..2_000, 0..100),
                                                  from in 0u64..2_100) {
            let b: Bitmap = indexes.iter().copied().collect();
            prop_assert_eq!(b.len_from(from), indexes.range(from..).count() as u64);
        }
    }

    #[test]
    fn half_of_a_hundred_thousand_sessions_is_small() {
        let b: Bitmap = (0..100_000u64).step_by(2).collect();
        let encoded = b.encode();
        assert!(encoded.len() < 17_000, "{} bytes", encoded.len());
        assert!(Bitmap::decode("not base64!").is_err());
    }
}
