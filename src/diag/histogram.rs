//! A small fixed-bucket latency histogram for one query entry: four buckets per power of two of
//! microseconds (each at most 25% wide) from 1 µs to about 9 minutes, 4 bytes per bucket.
//! Quantiles are read by linear interpolation inside the bucket, so p50/p99 are within a
//! quarter of the true value.

const SUB: usize = 4;
const OCTAVES: usize = 29;
const BUCKETS: usize = SUB * OCTAVES;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    n: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            n: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram(n={})", self.n)
    }
}

/// The bucket of `us`, and the bounds `[lo, hi)` of bucket `i`.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // us in [2^octave, 2^(octave+1))
    let sub = ((us >> (octave - 2)) & 3) as usize;
    ((octave - 1) * SUB + sub).min(BUCKETS - 1)
}

fn bounds(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let octave = i / SUB + 1;
    let sub = (i % SUB) as u64;
    let step = 1u64 << (octave - 2);
    let lo = (1u64 << octave) + sub * step;
    (lo, lo + step)
}

/// The bucket of `us`, for a caller that keeps samples before recording them (one byte each).
pub fn bucket_of(us: u64) -> u8 {
    bucket(us) as u8
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        self.record_bucket(bucket(us) as u8);
    }

    /// Records a sample by its bucket ([`bucket_of`]).
    pub fn record_bucket(&mut self, b: u8) {
        let c = &mut self.counts[(b as usize).min(BUCKETS - 1)];
        *c = c.saturating_add(1);
        self.n += 1;
    }

    pub fn count(&self) -> u64 {
        self.n
    }

    /// The `q` quantile (0..=1) in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.n as f64).max(1.0);
        let mut seen = 0f64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let c = c as f64;
            if seen + c >= rank {
                let (lo, hi) = bounds(i);
                let frac = (rank - seen) / c;
                return lo + ((hi - lo) as f64 * frac) as u64;
            }
            seen += c;
        }
        bounds(BUCKETS - 1).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 20, 1 << 27, u64::MAX]) {
            let b = bucket(us);
            assert!(b >= last || us > 100_000, "{us}");
            last = b;
            if b < BUCKETS - 1 {
                let (lo, hi) = bounds(b);
                assert!(lo <= us && us < hi, "{us} in bucket {b} [{lo}, {hi})");
            }
        }
    }

    #[test]
    fn quantiles_are_within_a_quarter() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        for (q, want) in [(0.5, 5000.0), (0.99, 9900.0), (0.01, 100.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() <= want * 0.25, "q{q}: {got} vs {want}");
        }
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
