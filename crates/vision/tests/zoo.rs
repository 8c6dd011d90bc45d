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
        ("inception_v3", 27_161_264),
        ("inception_v3_noaux", 23_834_568),
    ] {
        assert_eq!(num_params(&imagenet(name)), count, "{name}");
    }
}

/// Counts published for the models torchvision lacks: Caffe's BVLC AlexNet (the paper's
/// two-tower network, 60,965,224) and the CIFAR ResNet-20 of He et al. (0.27 M; 269,722 exactly
/// with the parameter-free shortcut).
#[test]
fn parameter_counts_of_paper_models() {
    assert_eq!(num_params(&imagenet("alexnet_paper")), 60_965_224);
    let cifar = |name: &str| {
        build(
            name,
            &ModelConfig {
                in_shape: [3, 32, 32],
                num_classes: 10,
                hidden: vec![],
                seed: 0,
            },
        )
        .unwrap()
    };
    assert_eq!(num_params(&cifar("resnet20")), 269_722);
}

/// The Inception family at its native input sizes: logits of the right shape, auxiliary heads
/// only in training, and torchvision's flat Inception-v3 keys.
#[test]
fn inception_family_shapes_and_keys() {
    let _g = aics_tensor::no_grad();
    for (name, size) in [
        ("inception_v3", 299),
        ("bn_inception", 224),
        ("googlenet_paper", 224),
        ("googlenet_naive", 224),
        ("alexnet_paper", 227),
        ("googlenet_small", 32),
        ("alexnet_small", 32),
        ("resnet20", 32),
    ] {
        let m = build(
            name,
            &ModelConfig {
                in_shape: [3, size, size],
                num_classes: 10,
                hidden: vec![],
                seed: 2,
            },
        )
        .unwrap();
        let x = aics_tensor::Tensor::randn(
            &[2, 3, size, size],
            0.0,
            1.0,
            &mut aics_tensor::Rng::new(1),
        );
        let (y, aux) = m.forward_with_aux(&x).unwrap();
        assert_eq!(y.shape(), &[2, 10], "{name}");
        assert!(y.to_vec().iter().all(|v| v.is_finite()), "{name}");
        let expect_aux = match name {
            "inception_v3" => 1,
            n if n.starts_with("googlenet") => 2,
            _ => 0,
        };
        assert_eq!(aux.len(), expect_aux, "{name}");
        m.set_training(false);
        let (y2, aux) = m.forward_with_aux(&x).unwrap();
        assert!(aux.is_empty() && y2.shape() == [2, 10], "{name}");
    }
    let keys: Vec<String> = state_dict(&imagenet("inception_v3"))
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for k in [
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_5b.branch5x5_1.bn.running_mean",
        "Mixed_6e.branch7x7dbl_5.conv.weight",
        "Mixed_7c.branch3x3_2b.conv.weight",
        "Mixed_7c.branch3x3dbl_3a.bn.weight",
        "Mixed_7b.branch_pool.conv.weight",
        "AuxLogits.conv1.conv.weight",
        "AuxLogits.fc.bias",
        "fc.weight",
    ] {
        assert!(keys.contains(&k.to_string()), "inception_v3 lacks {k}");
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
        aics_vision::models::googlenet::Variant::Torchvision,
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
