//! Counter-based randomness: every draw is a pure function of (seed, stream, counter), so a
//! query is the same on 1 core or 16, on one machine or many, in any order of volumes.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `SplitMix64`'s finaliser: a bijective 64-bit mixer with full avalanche.
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits for `counter` of `stream` under `seed`.
#[inline(always)]
pub fn random_bits(seed: u64, stream: u64, counter: u64) -> u64 {
    let keyed = mix64(mix64(seed.wrapping_add(GOLDEN)) ^ stream);
    mix64(keyed ^ counter.wrapping_mul(GOLDEN).wrapping_add(GOLDEN))
}

/// A uniform draw in the open interval (0, 1), 53 bits of resolution.
#[inline(always)]
pub fn uniform_open(seed: u64, stream: u64, counter: u64) -> f64 {
    ((random_bits(seed, stream, counter) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

/// A Gumbel(0, 1) draw: `-ln(-ln U)`.
#[inline(always)]
pub fn gumbel(seed: u64, stream: u64, counter: u64) -> f64 {
    -(-uniform_open(seed, stream, counter).ln()).ln()
}

/// The stream key of a (case, AL loop, stratum) triple: FNV-1a over the case name's bytes,
/// then mixed with the loop and the stratum. Stable across platforms and versions.
pub fn stream_id(case: &str, loop_index: i64, stratum: i64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in case.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(mix64(h ^ mix64(loop_index as u64)) ^ mix64((stratum as u64).wrapping_add(GOLDEN)))
}
