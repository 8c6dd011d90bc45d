//! Mutation fuzzing of the file readers (darknet cfg and weights, COCO annotations and results,
//! VOC XML): valid files with random byte flips, insertions, deletions, duplications and
//! out-of-range numbers, from a fixed seed. A reader must return or refuse, never panic. The
//! `fuzz/` targets explore further with coverage guidance.

use aics_detect::darknet::Darknet;
use aics_detect::data::{parse_coco, parse_results, parse_voc};
use aics_tensor::Rng;
use aics_testkit::json;

const CFG: &str = "[net]\nwidth=16\nheight=16\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n[maxpool]\nsize=2\nstride=1\n[route]\nlayers=-1,-2\n[convolutional]\nfilters=21\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nclasses=2\nnum=3\n";
const VOC: &str = "<annotation><filename>a.png</filename><size><width>64</width><height>48</height><depth>3</depth></size><object><name>dog</name><difficult>1</difficult><bndbox><xmin>3</xmin><ymin>4</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>";

fn mutate(src: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len().max(1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(n);
                v[i] = rng.below(256) as u8;
            }
            1 => {
                let i = rng.below(n + 1).min(v.len());
                let bytes: &[u8] = [
                    &b"-"[..],
                    b"99999999999",
                    b"0",
                    b"=",
                    b"[",
                    b"]",
                    b"\n",
                    b",",
                    b"<",
                    b">",
                    b"\"",
                    b"1e309",
                    b"-1",
                ][rng.below(13)];
                v.splice(i..i, bytes.iter().copied());
            }
            2 if !v.is_empty() => {
                let i = rng.below(n);
                let j = (i + rng.below(16)).min(v.len());
                v.drain(i..j);
            }
            3 if !v.is_empty() => {
                let i = rng.below(n);
                let j = (i + rng.below(32)).min(v.len());
                let piece = v[i..j].to_vec();
                let k = rng.below(v.len() + 1);
                v.splice(k..k, piece);
            }
            4 => v.truncate(rng.below(n + 1)),
            _ => {
                // a digit becomes a long run of digits
                if let Some(i) = v
                    .iter()
                    .position(|b| b.is_ascii_digit())
                    .map(|p| (p + rng.below(n)) % n)
                {
                    if v[i].is_ascii_digit() {
                        v.splice(i..i + 1, b"4294967297".iter().copied());
                    }
                }
            }
        }
    }
    v
}

const RUNS: usize = 20_000;

#[test]
fn darknet_cfg_and_weights_never_panic() {
    let mut rng = Rng::new(1);
    let net = Darknet::from_cfg(CFG).unwrap();
    let mut weights = Vec::new();
    for v in [0i32, 2, 0] {
        weights.extend_from_slice(&v.to_le_bytes());
    }
    weights.extend_from_slice(&0u64.to_le_bytes());
    for i in 0..net.num_weights() {
        weights.extend_from_slice(&(i as f32).to_le_bytes());
    }
    let mut built = 0;
    for _ in 0..RUNS {
        let cfg = mutate(CFG.as_bytes(), &mut rng);
        if Darknet::from_cfg(&String::from_utf8_lossy(&cfg)).is_ok() {
            built += 1;
        }
        let _ = net.load_weights_bytes(&mutate(&weights, &mut rng));
    }
    assert!(
        built > 0 && built < RUNS,
        "{built} of {RUNS} mutated cfgs built"
    );
}

#[test]
fn annotation_readers_never_panic() {
    let mut rng = Rng::new(2);
    let f = json::load("map/basic.json");
    let gt_text = f["gt"].to_string();
    let dt_text = f["dt"].to_string();
    let gt = parse_coco(&gt_text).unwrap();
    let mut ok = [0usize; 3];
    for _ in 0..RUNS {
        ok[0] += parse_coco(&String::from_utf8_lossy(&mutate(
            gt_text.as_bytes(),
            &mut rng,
        )))
        .is_ok() as usize;
        ok[1] += parse_results(
            &String::from_utf8_lossy(&mutate(dt_text.as_bytes(), &mut rng)),
            &gt,
        )
        .is_ok() as usize;
        ok[2] +=
            parse_voc(&String::from_utf8_lossy(&mutate(VOC.as_bytes(), &mut rng))).is_ok() as usize;
    }
    assert!(
        ok.iter().all(|&n| n > 0 && n < RUNS),
        "accepted {ok:?} of {RUNS}"
    );
}
