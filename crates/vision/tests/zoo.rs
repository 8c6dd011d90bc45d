//! The model zoo matches torchvision: parameter counts (as printed by torchvision 0.14,
//! `sum(p.numel() for p in torchvision.models.NAME().parameters())`), state-dict keys, and output
//! shapes.

use aics_nn::{num_params, state_dict, Module};
use aics_vision::{build, ModelConfig};

fn imagenet(name: &str) -> Box<dyn Module> {
    build(
        name,
        &ModelConfig {
            in_shape: [3, 224, 224],
            num_classes: 1000,
            hidden: vec![],
            seed: 0,
        },
    )
    .unwrap()
}

#[test]
fn parameter_counts_match_torchvision() {
    for (name, count) in [
        ("alexnet", 61_100_840),
        ("vgg11", 132_863_336),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("vgg16_bn", 138_365_992),
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("mobilenet_v2", 3_504_872),
        ("googlenet", 13_004_888),
        ("googlenet_noaux", 6_624_904),
    ] {
        assert_eq!(num_params(&imagenet(name)), count, "{name}");
    }
}

#[test]
fn state_dict_keys_are_torchvision_keys() {
    let keys = |m: &dyn Module| {
        state_dict(m)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    };
    let r50 = keys(&imagenet("resnet50"));
    for k in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.num_batches_tracked",
        "layer4.2.conv3.weight",
        "fc.bias",
    ] {
        assert!(r50.contains(&k.to_string()), "resnet50 lacks {k}");
    }
    let r18 = keys(&imagenet("resnet18"));
    assert!(!r18.iter().any(|k| k.starts_with("layer1.0.downsample")));
    assert!(r18.contains(&"layer2.0.downsample.1.weight".to_string()));
    let vgg = keys(&imagenet("vgg16"));
    assert_eq!(
        &vgg[..2],
        &[
            "features.0.weight".to_string(),
            "features.0.bias".to_string()
        ]
    );
    assert!(vgg.contains(&"classifier.6.weight".to_string()));
    let alex = keys(&imagenet("alexnet"));
    assert!(
        alex.contains(&"features.10.weight".to_string())
            && alex.contains(&"classifier.1.weight".to_string())
    );
}

#[test]
fn forward_shapes() {
    for name in [
        "alexnet",
        "vgg11_bn",
        "resnet18",
        "resnet50",
        "mobilenet_v2",
    ] {
        let m = build(
            name,
            &ModelConfig {
                in_shape: [3, 64, 64],
                num_classes: 7,
                hidden: vec![],
                seed: 1,
            },
        )
        .unwrap();
        let _g = aics_tensor::no_grad();
        m.set_training(false);
        let y = m
            .forward(&aics_tensor::Tensor::zeros(&[2, 3, 64, 64]))
            .unwrap();
        assert_eq!(y.shape(), &[2, 7], "{name}");
    }
}

#[test]
fn googlenet_keys_and_auxiliary_heads() {
    let m = imagenet("googlenet");
    let keys: Vec<String> = state_dict(&m).into_iter().map(|(k, _)| k).collect();
    for k in [
        "conv1.conv.weight",
        "conv1.bn.running_mean",
        "inception3a.branch1.conv.weight",
        "inception3a.branch2.1.conv.weight",
        "inception4e.branch4.1.bn.bias",
        "aux1.conv.conv.weight",
        "aux2.fc2.bias",
        "fc.weight",
    ] {
        assert!(keys.contains(&k.to_string()), "googlenet lacks {k}");
    }
    // the auxiliary classifiers run only in training
    let g = aics_vision::models::googlenet::googlenet(
        &ModelConfig {
            in_shape: [3, 96, 96],
            num_classes: 5,
            hidden: vec![],
            seed: 0,
        },
        true,
    )
    .unwrap();
    let x = aics_tensor::Tensor::zeros(&[2, 3, 96, 96]);
    let (y, aux) = g.forward_aux(&x).unwrap();
    let (a1, a2) = aux.expect("aux logits in training");
    assert_eq!(
        (y.shape(), a1.shape(), a2.shape()),
        (&[2usize, 5][..], &[2usize, 5][..], &[2usize, 5][..])
    );
    g.set_training(false);
    assert!(g.forward_aux(&x).unwrap().1.is_none());
}
