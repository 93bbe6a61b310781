//! Random objects and patches through every engine: errors are fine, panics and hangs are not.

use crate::kinds;
use crate::patch::{apply, PatchType};
use serde_json::{json, Map, Value};

/// xorshift64*: a fixed seed, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const KEYS: &[&str] = &[
    "spec",
    "containers",
    "name",
    "env",
    "ports",
    "containerPort",
    "metadata",
    "finalizers",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$deleteFromPrimitiveList/finalizers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList",
    "value",
    "a",
];

fn value(rng: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0 || rng.below(3) == 0;
    match rng.below(if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(3)),
        2 => json!(["replace", "delete", "merge", "web", "name"][rng.below(5) as usize]),
        3 => json!(rng.below(2) == 0),
        4 => json!(1.5),
        5 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        _ => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                let k = KEYS[rng.below(KEYS.len() as u64) as usize];
                map.insert(k.to_string(), value(rng, depth - 1));
            }
            Value::Object(map)
        }
    }
}

fn json_patch(rng: &mut Rng) -> Value {
    let ops = ["add", "remove", "replace", "move", "copy", "test", "x"];
    let paths = [
        "",
        "/spec",
        "/spec/containers",
        "/spec/containers/0",
        "/spec/containers/-",
        "/a/-1",
        "/metadata/finalizers/1",
        "/~1",
        "/spec/x/y",
    ];
    let list = (0..rng.below(6))
        .map(|_| {
            json!({
                "op": ops[rng.below(ops.len() as u64) as usize],
                "path": paths[rng.below(paths.len() as u64) as usize],
                "from": paths[rng.below(paths.len() as u64) as usize],
                "value": value(rng, 3),
            })
        })
        .collect();
    Value::Array(list)
}

#[test]
fn random_objects_and_patches_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let original = value(&mut rng, 6);
        let patch = value(&mut rng, 6);
        for t in [PatchType::Merge, PatchType::StrategicMerge] {
            let _ = apply(&kinds::PODS, &original, patch.to_string().as_bytes(), t);
        }
        let ops = json_patch(&mut rng);
        let _ = apply(
            &kinds::PODS,
            &original,
            ops.to_string().as_bytes(),
            PatchType::Json,
        );
    }
}
