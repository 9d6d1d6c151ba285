//! A cheap in-tree fuzz: mutated variants of the example must never panic.
use super::super::{fuzz_parse, load_str};
use super::{DEVICES, EXAMPLE, FILES, MODES, NESTED};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"&a ",
    b"*a",
    b"!!str ",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"- ",
    b"\n  ",
    b"\"",
    b"'",
    b"---\n",
    b"? ",
    b"|\n",
    b"::ffff:1.2.3.4/120",
    b"65536",
    b"0",
    b"**",
    b"[",
    b"\t",
    b"#",
    b"%YAML 1.2\n",
    b"\xff",
    b"/..",
    b"//",
    b"access: read-write\n",
    b"paths: [/x]\n",
    b"gpus: [0, 253]\n",
    b"devices: {gpus: all}\n",
];

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, t.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + rng.below(40)).min(out.len());
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = (at + rng.below(200)).min(out.len());
                let chunk = out[at..end].to_vec();
                let to = rng.below(out.len() + 1);
                out.splice(to..to, chunk);
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let bases = [EXAMPLE.as_bytes(), NESTED.as_bytes(), MODES.as_bytes(), FILES.as_bytes(), DEVICES.as_bytes()];
    let mut loaded = 0;
    for i in 0..600 {
        let input = mutate(&mut rng, bases[i % bases.len()]);
        fuzz_parse(&input);
        let text = String::from_utf8_lossy(&input);
        if let Ok(super::super::Config { policy: p, .. }) = load_str(&text, "fuzz") {
            loaded += 1;
            let c = p.compile();
            assert_eq!(c.segment_info.len(), p.segments.len());
            assert_eq!(c.files.len(), p.segments.iter().map(|s| s.paths.len()).sum::<usize>());
            assert_eq!(c.devices.len(), p.segments.iter().filter(|s| s.devices.is_some()).count());
        }
    }
    // Some mutations (e.g. inside comments) must still load: the harness reaches compile().
    assert!(loaded > 0);
}

#[test]
fn pathological_inputs() {
    for input in [
        "[".repeat(100_000),
        "{a: ".repeat(10_000),
        "- ".repeat(10_000),
        (0..200).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect::<String>(),
        "&a [*a, *a]".to_string(),
        "\u{feff}version: 1".to_string(),
        "\0".to_string(),
        "? [a]\n: 1\n".to_string(),
    ] {
        fuzz_parse(input.as_bytes());
    }
}
