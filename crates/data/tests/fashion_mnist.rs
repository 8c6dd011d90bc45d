//! End-to-end check on the real Fashion-MNIST files fetched by
//! `scripts/setup.sh`: load the test split and run one shuffled, augmented
//! epoch through the data loader. Ignored by a plain `cargo test`; `.ci/run` runs it after set-up.

use std::path::Path;
use std::sync::Arc;

use aics_data::{
    load_fashion_mnist, Compose, DataLoader, Dataset, Normalize, RandomCrop, RandomHorizontalFlip,
    Transform,
};

#[test]
#[ignore = "needs the fetched assets: bash scripts/setup.sh"]
fn loader_epoch_over_fashion_mnist_test_split() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/fashion-mnist");
    assert!(
        dir.is_dir(),
        "{} not found: this test needs the fetched assets (bash scripts/setup.sh)",
        dir.display()
    );
    let test: Arc<dyn Dataset> = Arc::new(load_fashion_mnist(&dir, false).expect("test split"));
    let transform: Arc<dyn Transform> = Arc::new(
        Compose::default()
            .then(RandomCrop::new(28, 2))
            .then(RandomHorizontalFlip::new(0.5))
            .then(Normalize::new(vec![0.286], vec![0.353]).expect("valid")),
    );
    let loader =
        DataLoader::new(test, 1000, true, 1, Some(transform), false).expect("valid loader");
    assert_eq!(loader.len(), 10);

    let mut counts = [0usize; 10];
    let mut seen = vec![false; 10_000];
    for batch in loader.epoch(0) {
        let batch = batch.expect("batch loads");
        assert_eq!(batch.shape, [1000, 1, 28, 28]);
        assert_eq!(batch.images.len(), 1000 * 28 * 28);
        assert!(batch.images.iter().all(|v| v.is_finite()));
        for (&label, &index) in batch.labels.iter().zip(&batch.indices) {
            counts[label] += 1;
            assert!(!seen[index], "sample {index} seen twice");
            seen[index] = true;
        }
    }
    assert_eq!(counts, [1000; 10]);
    assert!(seen.iter().all(|&s| s));
}
