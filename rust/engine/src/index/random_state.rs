//! numpy's legacy `RandomState`, exactly: MT19937 seeded with the reference `init_genrand`,
//! numpy's masked-rejection bounded draws and its Fisher–Yates `shuffle`. GPT-NeoX shuffles its
//! indices with this generator, so every draw here must equal numpy's for every seed.
//! Facts: shared/spec/data-pipeline.md §3.

use crate::{Error, Result};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

#[derive(Clone)]
pub struct RandomState {
    mt: Box<[u32; N]>,
    /// The current block, already tempered: regenerating and tempering 624 words at a time
    /// vectorises, one word at a time does not.
    out: Box<[u32; N]>,
    pos: usize,
}

impl std::fmt::Debug for RandomState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RandomState(pos={})", self.pos)
    }
}

impl RandomState {
    /// `numpy.random.RandomState(seed)`; numpy accepts exactly the seeds in [0, 2^32 − 1].
    pub fn new(seed: u64) -> Result<Self> {
        let seed = u32::try_from(seed).map_err(|_| {
            Error::invalid(format!(
                "seed {seed} is out of range: numpy's RandomState takes seeds in [0, 4294967295]"
            ))
        })?;
        Ok(Self::from_u32(seed))
    }

    pub fn from_u32(seed: u32) -> Self {
        let mut mt = Box::new([0u32; N]);
        mt[0] = seed;
        for i in 1..N {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        // Position N: the first draw regenerates the whole block, as numpy does.
        RandomState {
            mt,
            out: Box::new([0u32; N]),
            pos: N,
        }
    }

    #[inline(never)]
    fn regenerate(&mut self) {
        #[inline(always)]
        fn twist(a: u32, b: u32, c: u32) -> u32 {
            let y = (a & UPPER_MASK) | (b & LOWER_MASK);
            c ^ (y >> 1) ^ (0u32.wrapping_sub(y & 1) & MATRIX_A)
        }
        let mt = &mut *self.mt;
        for k in 0..N - M {
            mt[k] = twist(mt[k], mt[k + 1], mt[k + M]);
        }
        for k in N - M..N - 1 {
            mt[k] = twist(mt[k], mt[k + 1], mt[k + M - N]);
        }
        mt[N - 1] = twist(mt[N - 1], mt[0], mt[M - 1]);
        for (o, &x) in self.out.iter_mut().zip(mt.iter()) {
            let mut y = x;
            y ^= y >> 11;
            y ^= (y << 7) & 0x9d2c_5680;
            y ^= (y << 15) & 0xefc6_0000;
            *o = y ^ (y >> 18);
        }
        self.pos = 0;
    }

    /// The next raw 32-bit output (`RandomState.randint(0, 2**32, dtype=np.uint32)` draws these).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.regenerate();
        }
        let y = self.out[self.pos];
        self.pos += 1;
        y
    }

    /// 64-bit draw: high word first, as numpy's legacy `next_uint64`.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        (hi << 32) | self.next_u32() as u64
    }

    /// A uniform integer in `[0, max]` (inclusive) by numpy's masked rejection
    /// (`random_interval`); `max == 0` consumes no draw.
    #[inline]
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u32::MAX as u64 {
            let mask = mask as u32;
            loop {
                let v = self.next_u32() & mask;
                if v as u64 <= max {
                    return v as u64;
                }
            }
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// `RandomState.randint(low, high, dtype=np.int64)`: uniform in `[low, high)`.
    pub fn randint(&mut self, low: i64, high: i64) -> Result<i64> {
        if high <= low {
            return Err(Error::invalid(format!("randint: low {low} >= high {high}")));
        }
        let range = (high as i128 - 1 - low as i128) as u64;
        // numpy's full-width cases take the raw draw; its masked path gives the same value.
        let v = if range == u32::MAX as u64 {
            self.next_u32() as u64
        } else if range == u64::MAX {
            self.next_u64()
        } else {
            self.interval(range)
        };
        Ok((low as i128 + v as i128) as i64)
    }

    /// `RandomState.shuffle(x)` for a 1-D array: the draws never depend on the values.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        shuffle_prefetched(self, x);
    }

    /// Advance the stream exactly as `shuffle` of `n` elements would, without touching memory:
    /// lets a second shuffle start before the first is done.
    pub fn skip_shuffle(&mut self, n: usize) {
        for i in (1..n).rev() {
            self.interval(i as u64);
        }
    }
}

/// Draws of a shuffle made ahead of its swaps, so another thread can make them: the swap
/// targets for i = `i_from`, `i_from` − 1, ..., down to `i_from` − `count` + 1 (each i ≥ 1).
pub fn shuffle_draws(rng: &mut RandomState, i_from: usize, count: usize, out: &mut Vec<u32>) {
    debug_assert!(count <= i_from && i_from <= u32::MAX as usize);
    out.clear();
    for i in (i_from + 1 - count..=i_from).rev() {
        out.push(rng.interval(i as u64) as u32);
    }
}

/// The swaps of a shuffle for i = `i_from`, `i_from` − 1, ... with targets drawn earlier by
/// `shuffle_draws`; targets are prefetched `LOOKAHEAD` swaps ahead.
pub fn apply_swaps<T>(x: &mut [T], i_from: usize, draws: &[u32]) {
    let base = x.as_ptr();
    for (k, &j) in draws.iter().enumerate() {
        if let Some(&ahead) = draws.get(k + LOOKAHEAD) {
            prefetch(base.wrapping_add(ahead as usize));
        }
        x.swap(i_from - k, j as usize);
    }
}

/// How many swap targets are drawn ahead and prefetched. The shuffle of a large array is bound
/// by cache misses on `x[j]`; issuing the loads a few dozen swaps early overlaps them.
const LOOKAHEAD: usize = 64;

#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, even on an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Fisher–Yates exactly as numpy (i from n−1 down to 1, j = interval(i), swap), with the draws
/// generated `LOOKAHEAD` swaps ahead of their use so that `x[j]` can be prefetched. The swaps
/// themselves still happen in order, so the result is identical.
fn shuffle_prefetched<T>(rng: &mut RandomState, x: &mut [T]) {
    let n = x.len();
    if n < 2 {
        return;
    }
    if n < 1 << 16 {
        // Fits in cache: prefetching only costs.
        for i in (1..n).rev() {
            let j = rng.interval(i as u64) as usize;
            x.swap(i, j);
        }
        return;
    }
    let mut ring = [0usize; LOOKAHEAD];
    // Pre-fill: draws for i = n-1, n-2, ... n-LOOKAHEAD.
    let mut next_draw = n - 1; // the i whose draw comes next
    let mut filled = 0;
    while filled < LOOKAHEAD && next_draw >= 1 {
        let j = rng.interval(next_draw as u64) as usize;
        prefetch(x.as_ptr().wrapping_add(j));
        ring[(n - 1 - next_draw) % LOOKAHEAD] = j;
        next_draw -= 1;
        filled += 1;
    }
    for i in (1..n).rev() {
        let slot = (n - 1 - i) % LOOKAHEAD;
        let j = ring[slot];
        if next_draw >= 1 {
            let jj = rng.interval(next_draw as u64) as usize;
            prefetch(x.as_ptr().wrapping_add(jj));
            // i's slot is free now that j has been read, and next_draw maps onto it.
            ring[(n - 1 - next_draw) % LOOKAHEAD] = jj;
            next_draw -= 1;
        }
        x.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs() {
        assert_eq!(RandomState::from_u32(5489).next_u32(), 3_499_211_612);
        let mut r = RandomState::from_u32(1234);
        let got: Vec<u32> = (0..5).map(|_| r.next_u32()).collect();
        assert_eq!(
            got,
            [822569775, 2137449171, 2671936806, 3512589365, 1880026316]
        );
    }

    #[test]
    fn shuffle_of_ten_matches_numpy() {
        let mut x: Vec<u32> = (0..10).collect();
        RandomState::from_u32(1234).shuffle(&mut x);
        assert_eq!(x, [7, 2, 9, 1, 0, 8, 4, 5, 6, 3]);
    }

    #[test]
    fn prefetched_shuffle_equals_plain_fisher_yates() {
        let n = 200_003;
        let mut a: Vec<u32> = (0..n).collect();
        let mut b = a.clone();
        RandomState::from_u32(99).shuffle(&mut a);
        let mut r = RandomState::from_u32(99);
        for i in (1..b.len()).rev() {
            let j = r.interval(i as u64) as usize;
            b.swap(i, j);
        }
        assert_eq!(a, b);
    }

    #[test]
    fn shuffle_from_precomputed_draws_is_the_same_shuffle() {
        let n = 100_001usize;
        let mut a: Vec<u32> = (0..n as u32).collect();
        let mut b = a.clone();
        RandomState::from_u32(5).shuffle(&mut a);
        let mut r = RandomState::from_u32(5);
        let mut draws = Vec::new();
        let mut i = n - 1;
        while i >= 1 {
            let c = i.min(4096);
            shuffle_draws(&mut r, i, c, &mut draws);
            apply_swaps(&mut b, i, &draws);
            i -= c;
        }
        assert_eq!(a, b);
    }

    #[test]
    fn skip_shuffle_leaves_the_same_state() {
        let mut a = RandomState::from_u32(7);
        let mut b = a.clone();
        let mut x: Vec<u8> = vec![0; 100_000];
        a.shuffle(&mut x);
        b.skip_shuffle(x.len());
        assert_eq!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn seed_out_of_range_is_an_error() {
        assert!(RandomState::new(1 << 32).is_err());
        assert!(RandomState::new(u32::MAX as u64).is_ok());
    }
}
