"""Exports of jax functions: whole predictors (image + face box -> image-pixel landmarks) and the
BB-FCN scanner (whole image -> detections and faces) as StableHLO via jax.export, and the
whole predictors as ONNX (jax2onnx) and TFLite (jax2tf).

  * `crop`:       the MCL test-time face crop (`lmjax.core.image_ops.mcl_crop`) in jax ops, so
                  the crop runs inside the exported graph;
  * `stablehlo`:  builds the predictor function of a model folder, exports it with a symbolic
                  batch, checks it against the folder's predictor and writes it with a sidecar;
  * `runner`:     `ExportedPredictor`, a deserialised export behind the predictors' image API
                  (what `python -m lmjax.evaluate --checkpoint=FILE.stablehlo` scores);
  * `validation`: parity of an export with its folder on the validation faces, for the
                  sidecar and the model card;
  * `resize`:     OpenCV's INTER_AREA / INTER_LINEAR resize as static taps;
  * `scan_graph`: the scanner of one fixed canvas as one jittable function;
  * `scan_export`, `scan_runner`: its export with parity against `Scanner.scan`, and
                  `ExportedScanner` (letterboxes pictures of other sizes).

  * `onnx_convert`: jax functions -> ONNX with jax2onnx (optional, the `onnx` extra);
  * `onnx_bbfcn`: a BB-FCN network (backbone and branches) as ONNX through jax2onnx;
  * `onnx_whole`: the crop, a network graph and the mapping to image pixels as one graph;
  * `onnx_file`:  `lmjax.export --format=onnx --image_size=HxW`, with parity checks;
  * `onnx_runner`: `OnnxPredictor`, such a file behind the image API (what
                  `python -m lmjax.evaluate --checkpoint=FILE.onnx` scores);
  * `tflite`:     the same function through jax2tf and the TFLite converter (the `tflite` extra).

`python -m lmjax.export --format=stablehlo [--scanner]` writes the files (MCL and BB-FCN
folders); a StableHLO file needs only jax, an ONNX file only onnxruntime.
"""
