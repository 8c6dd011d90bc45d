//! MatConvNet VGG files map onto the zoo's torchvision keys.

use std::path::PathBuf;

use aics_nn::{state_dict, Module};
use aics_vision::weights::{matconvnet_vgg_keys, read_matconvnet_vgg};
use aics_vision::{build, ModelConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/mat")
        .join(name)
}

/// `imagenet-vgg-verydeep-19.mat` names its layers conv1_1 … conv5_4, fc6, fc7, fc8; those must
/// land exactly on the weight keys of the zoo's (torchvision's) VGG19.
#[test]
fn vgg19_layer_names_map_to_torchvision_keys() {
    let mut names = Vec::new();
    for (block, n) in [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)] {
        for i in 1..=n {
            names.push(format!("conv{block}_{i}"));
        }
    }
    names.extend(["fc6", "fc7", "fc8"].map(String::from));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mapped: Vec<String> = matconvnet_vgg_keys(&refs)
        .into_iter()
        .map(|k| format!("{k}.weight"))
        .collect();
    let vgg: Box<dyn Module> = build(
        "vgg19",
        &ModelConfig {
            in_shape: [3, 224, 224],
            num_classes: 1000,
            hidden: vec![],
            seed: 0,
        },
    )
    .unwrap();
    let want: Vec<String> = state_dict(&vgg)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.ends_with(".weight"))
        .collect();
    assert_eq!(mapped, want);
}

#[test]
fn matconvnet_file_loads_with_mean_pixel() {
    let (map, mean) = read_matconvnet_vgg(&fixture("vgg_tiny.mat")).unwrap();
    assert!(map.contains_key("features.0.weight") && map.contains_key("features.2.bias"));
    let (shape, data) = &map["features.0.weight"];
    assert_eq!(shape.len(), 4);
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let m = mean.expect("mean pixel");
    aics_tensor::testing::assert_close(
        "mean pixel",
        &m,
        &[123.68f32, 116.779, 103.939],
        aics_tensor::testing::Tol::new(1e-3, 0.0),
    );
    // a file that is not a MatConvNet model is an error naming it
    let err = read_matconvnet_vgg(&fixture("numeric.mat"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("numeric.mat"), "{err}");
}
