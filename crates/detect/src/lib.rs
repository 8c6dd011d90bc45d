//! aics-detect: what every detector shares. Box formats and their conversions, pairwise IoU and
//! GIoU (differentiable, through tensor ops), clipping, small-box removal, non-maximum
//! suppression, the R-CNN box coder and the anchor generator, with torchvision's semantics;
//! detection annotations (COCO JSON, Pascal VOC XML, COCO results files) and mAP; and the
//! detectors: darknet's YOLO, MTCNN, YOLOv1's loss, selective search, Fast and Faster R-CNN and
//! SSD (torchvision's models with their keys, and small ones trained on synthetic scenes).

pub mod anchors;
pub mod blazeface;
pub mod boxes;
pub mod coder;
pub mod darknet;
pub mod data;
pub mod error;
pub mod eval;
pub mod faster_rcnn;
pub mod mtcnn;
pub mod rcnn;
pub mod selective_search;
pub mod ssd;
pub mod synth;
pub mod transforms;
pub mod yolo;
pub mod yolov1;

pub use anchors::AnchorGenerator;
pub use boxes::{
    batched_nms, box_area, box_convert, box_iou, clip_boxes_to_image, generalized_box_iou, nms,
    non_max_suppression, remove_small_boxes, BoxFormat,
};
pub use coder::BoxCoder;
pub use error::{DetectError, Result};
pub use eval::{coco_eval, voc_eval, CocoEval, CocoStats, VocAp, VocEval};
pub use faster_rcnn::{Detections, FasterRcnn};
