//! `g2p_en`'s trained GRU encoder–decoder run by aics against the package's own numpy forward
//! (`G2p.predict`, `fixtures/g2p.json` by `fixtures/gen_g2p.py`): the same phonemes for every
//! word of the list. Needs the weights fetched by `scripts/setup.sh`.

use std::path::PathBuf;

use aics_testkit::json::load;
use aics_text::g2p::{CmuDict, G2p};

fn cache(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache")
        .join(p)
}

#[test]
#[ignore = "needs .cache/weights/g2p_en/checkpoint20.npz (scripts/setup.sh)"]
fn greedy_decoding_equals_the_packages_forward() {
    let m = G2p::from_npz(&cache("weights/g2p_en/checkpoint20.npz")).unwrap();
    let fx = load("g2p.json");
    let words = fx["words"].as_array().unwrap();
    assert!(words.len() >= 200);
    let mut wrong = Vec::new();
    for w in words {
        let word = w["word"].as_str().unwrap();
        let want: Vec<&str> = w["phonemes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let got = m.predict(word).unwrap();
        if got != want {
            wrong.push(format!("{word}: {got:?} vs {want:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        words.len(),
        wrong.join("\n")
    );
}

#[test]
#[ignore = "needs .cache/cmudict/cmudict.dict (scripts/setup.sh)"]
fn cmudict_reads_every_word() {
    let d = CmuDict::load(&cache("cmudict/cmudict.dict")).unwrap();
    // 135,166 lines, of which some are second pronunciations
    assert!(d.len() > 120_000 && d.len() < 135_166, "{}", d.len());
    assert_eq!(d.get("cat").unwrap(), ["K", "AE1", "T"]);
    assert_eq!(
        d.get("granting").unwrap(),
        ["G", "R", "AE1", "N", "T", "IH0", "NG"]
    );
}
