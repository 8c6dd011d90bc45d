//! The YOLOv1 loss against darknet's `[detection]` layer in training
//! (fixtures/darknet/yolov1_loss.json, made by fixtures/gen_yolov1_loss.py): its gradient is
//! darknet's `delta` and `Σ delta²` darknet's cost, on cases with the RMSE fallback, IoU
//! choices, ties and dropped objects.

use aics_detect::darknet::DetectionHead;
use aics_detect::yolov1::{yolov1_loss, V1Object, Yolov1Scales};
use aics_tensor::testing::{assert_close, assert_close_one, Tol};
use aics_tensor::Tensor;
use aics_testkit::json;

#[test]
fn yolov1_loss_gradient_is_darknets_delta() {
    let f = json::load("darknet/yolov1_loss.json");
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let k = &c["config"];
        let u = |key: &str| k[key].as_u64().unwrap() as usize;
        let head = DetectionHead {
            classes: u("classes"),
            coords: u("coords"),
            side: u("side"),
            num: u("num"),
            sqrt: u("sqrt") == 1,
            softmax: false,
        };
        let sc = Yolov1Scales {
            object: k["object_scale"].as_f64().unwrap() as f32,
            noobject: k["noobject_scale"].as_f64().unwrap() as f32,
            class: k["class_scale"].as_f64().unwrap() as f32,
            coord: k["coord_scale"].as_f64().unwrap() as f32,
            rescore: u("rescore") == 1,
        };
        let batch = u("batch");
        let input = json::f64s(&c["in"]);
        let per = input.len() / batch;
        let objects: Vec<Vec<V1Object>> = c["truth_boxes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|im| {
                im.as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        let v = json::f64s(o);
                        V1Object {
                            class: v[0] as usize,
                            bbox: [v[1] as f32, v[2] as f32, v[3] as f32, v[4] as f32],
                        }
                    })
                    .collect()
            })
            .collect();
        let x = Tensor::from_vec(input.iter().map(|&v| v as f32).collect(), &[batch, per])
            .unwrap()
            .requires_grad_(true);
        let l = yolov1_loss(&x, &head, &objects, sc).unwrap();
        let want = json::f64s(&c["delta"]);
        let tol = Tol::new(1e-6, 1e-5);
        assert_close(&format!("{name}: delta"), &l.delta, &want, tol);
        l.loss.backward().unwrap();
        let neg_grad: Vec<f32> = x.grad().unwrap().to_vec().iter().map(|g| -g).collect();
        assert_close(&format!("{name}: −∂loss/∂out"), &neg_grad, &want, tol);
        assert_close_one(
            &format!("{name}: cost"),
            l.darknet_cost() as f64,
            c["cost"].as_f64().unwrap(),
            Tol::new(1e-5, 1e-5),
        );
        assert_eq!(
            l.count,
            c["cells"].as_array().unwrap().len(),
            "{name}: object cells"
        );
    }
}
