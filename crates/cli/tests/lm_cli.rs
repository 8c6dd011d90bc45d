//! `aics lm train` and `aics lm sample` end to end on a small text: exact resume, deterministic
//! sampling, and one clear line on bad input.

mod common;

use common::{aics, err, ok, tmp};
use std::collections::HashMap;
use std::path::PathBuf;

use aics_nn::checkpoint::{load_checkpoint, save_checkpoint};
use aics_tensor::{Cell, Rng};
use aics_text::{CharLm, LmConfig};

/// A few kilobytes of verse-like text.
fn corpus(dir: &std::path::Path) -> String {
    let words = [
        "to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler",
    ];
    let mut rng = Rng::new(3);
    let mut s = String::new();
    for line in 0..300 {
        if line % 5 == 0 {
            s.push_str("HAMLET:\n");
        }
        for k in 0..6 {
            if k > 0 {
                s.push(' ');
            }
            s.push_str(words[rng.below(words.len())]);
        }
        s.push_str(",\n");
    }
    let p = dir.join("corpus.txt");
    std::fs::write(&p, &s).unwrap();
    p.display().to_string()
}

fn train_args<'a>(corpus: &'a str, ck: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "lm",
        "train",
        "--corpus",
        corpus,
        "--cell",
        "lstm",
        "--layers",
        "2",
        "--hidden",
        "16",
        "--embed",
        "8",
        "--dropout",
        "0.2",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--eval-every",
        "7",
        "--max-steps",
        steps,
        "--checkpoint",
        ck,
    ]
}

#[test]
fn train_resume_is_exact_and_sampling_is_seeded() {
    let d = tmp("resume");
    let c = corpus(&d);
    let full = d.join("full.safetensors").display().to_string();
    let part = d.join("part.safetensors").display().to_string();
    let log = d.join("log.jsonl").display().to_string();
    let mut args = train_args(&c, &full, "30");
    args.extend(["--log", &log]);
    ok(&aics(&args));
    ok(&aics(&train_args(&c, &part, "11")));
    let mut again = train_args(&c, &part, "30");
    again.push("--resume");
    ok(&aics(&again));
    let (a, b) = (
        load_checkpoint(full.as_ref()).unwrap(),
        load_checkpoint(part.as_ref()).unwrap(),
    );
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (k, (shape, v)) in &a.tensors {
        let (s2, v2) = &b.tensors[k];
        assert_eq!(shape, s2, "{k}");
        assert!(v == v2, "{k} differs after resume");
    }
    assert_eq!(a.meta("lm.step"), Some("30"));
    // one log line per validation (every 7 steps and at the end), each with its bits per char
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let bpc = lines.last().unwrap()["val_bpc"].as_f64().unwrap();
    assert!(bpc.is_finite() && bpc > 0.0 && bpc < 8.0, "{bpc}");
    assert!(d.join("full.png").exists());

    let sample = |seed: &str| {
        ok(&aics(&[
            "lm",
            "sample",
            "--checkpoint",
            &full,
            "--prompt",
            "HAMLET:",
            "--length",
            "40",
            "--seed",
            seed,
        ]))
    };
    let s1 = sample("4");
    assert!(s1.starts_with("HAMLET:"));
    assert_eq!(s1.trim_end().chars().count(), "HAMLET:".len() + 40);
    assert_eq!(s1, sample("4"));
    assert_ne!(s1, sample("5"));
}

#[test]
fn bad_input_is_one_line() {
    let d = tmp("bad");
    let c = corpus(&d);
    let ck = d.join("m.safetensors").display().to_string();
    ok(&aics(&train_args(&c, &ck, "3")));

    let empty = d.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let e = err(&aics(&train_args(empty.to_str().unwrap(), &ck, "3")));
    assert!(e.contains("empty"), "{e}");
    let bin = d.join("bin.txt");
    std::fs::write(&bin, [0x41u8, 0xff, 0xfe, 0x42]).unwrap();
    let e = err(&aics(&train_args(bin.to_str().unwrap(), &ck, "3")));
    assert!(e.contains("UTF-8"), "{e}");
    let e = err(&aics(&[
        "lm",
        "sample",
        "--checkpoint",
        &ck,
        "--prompt",
        "QUEEN",
    ]));
    assert!(e.contains("'Q'"), "{e}");
    let e = err(&aics(&[
        "lm",
        "sample",
        "--checkpoint",
        &ck,
        "--temperature",
        "0",
    ]));
    assert!(e.contains("temperature"), "{e}");
    // another cell or size than the checkpoint's
    let mut other = train_args(&c, &ck, "6");
    other[5] = "gru";
    other.push("--resume");
    let e = err(&aics(&other));
    assert!(e.contains("lstm") && e.contains("gru"), "{e}");
    let mut bigger = train_args(&c, &ck, "6");
    bigger[9] = "32";
    bigger.push("--resume");
    err(&aics(&bigger));
    // a file whose tensors do not fit what its metadata says
    let lm = CharLm::new(
        LmConfig {
            cell: Cell::Gru { reset_after: true },
            vocab: 3,
            embed: 4,
            hidden: 8,
            layers: 1,
            dropout: 0.0,
        },
        &mut Rng::new(0),
    )
    .unwrap();
    let mut meta = HashMap::new();
    for (k, v) in [
        ("lm.cell", "gru"),
        ("lm.vocab", "abc"),
        ("lm.embed", "4"),
        ("lm.hidden", "16"),
        ("lm.layers", "1"),
        ("lm.dropout", "0"),
    ] {
        meta.insert(k.to_string(), v.to_string());
    }
    let bad = d.join("shapes.safetensors");
    save_checkpoint(&bad, &lm, None, meta).unwrap();
    let e = err(&aics(&[
        "lm",
        "sample",
        "--checkpoint",
        bad.to_str().unwrap(),
        "--prompt",
        "a",
    ]));
    assert!(e.contains("shapes.safetensors"), "{e}");
    let e = err(&aics(&[
        "lm",
        "sample",
        "--checkpoint",
        d.join("none.safetensors").to_str().unwrap(),
    ]));
    assert!(e.contains("none.safetensors"), "{e}");
}

#[test]
#[ignore = "needs g2p_en's weights and CMUdict (scripts/setup.sh)"]
fn g2p_prints_the_packages_phonemes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("fixtures/g2p.json")).unwrap())
            .unwrap();
    let words: Vec<&serde_json::Value> = fx["words"].as_array().unwrap().iter().take(40).collect();
    let w = root.join(".cache/weights/g2p_en/checkpoint20.npz");
    let mut args = vec![
        "g2p".to_string(),
        "--json".into(),
        "--weights".into(),
        w.display().to_string(),
    ];
    args.extend(
        words
            .iter()
            .map(|v| v["word"].as_str().unwrap().to_string()),
    );
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = ok(&aics(&refs));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), words.len());
    for (got, want) in lines.iter().zip(&words) {
        assert_eq!(got["word"], want["word"]);
        assert_eq!(got["phonemes"], want["phonemes"], "{}", want["word"]);
        assert_eq!(got["source"], "model");
    }
    // with --dict, a dictionary word comes from CMUdict
    let c = root.join(".cache/cmudict/cmudict.dict");
    let out = ok(&aics(&[
        "g2p",
        "--dict",
        "--json",
        "--weights",
        w.to_str().unwrap(),
        "--cmudict",
        c.to_str().unwrap(),
        "hello",
        "activationist",
    ]));
    let l: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(l[0]["source"], "cmudict");
    assert_eq!(
        l[0]["phonemes"],
        serde_json::json!(["HH", "AH0", "L", "OW1"])
    );
    assert_eq!(l[1]["source"], "model");
}

#[test]
fn g2p_bad_input_is_one_line() {
    let d = tmp("g2p");
    let e = err(&aics(&[
        "g2p",
        "--weights",
        d.join("none.npz").to_str().unwrap(),
        "word",
    ]));
    assert!(e.contains("none.npz"), "{e}");
    let bad = d.join("bad.npz");
    std::fs::write(&bad, b"not a zip").unwrap();
    let e = err(&aics(&["g2p", "--weights", bad.to_str().unwrap(), "word"]));
    assert!(e.contains("bad.npz"), "{e}");
}

/// The data-parallel options are refused without `--distributed`, and `--distributed` by a
/// build without MPI, each in one line.
#[test]
fn distributed_options_need_distributed_and_mpi() {
    let d = tmp("dist-options");
    let c = corpus(&d);
    let ck = d.join("m.safetensors").display().to_string();
    let mut args = train_args(&c, &ck, "3");
    args.extend(["--bucket-mb", "3"]);
    let e = err(&aics(&args));
    assert!(e.contains("apply to --distributed runs only"), "{e}");
    if !cfg!(feature = "mpi") {
        let mut args = train_args(&c, &ck, "3");
        args.push("--distributed");
        let e = err(&aics(&args));
        assert!(e.contains("built without MPI"), "{e}");
    }
}
