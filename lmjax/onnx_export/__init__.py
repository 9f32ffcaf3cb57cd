"""Networks as ONNX graphs, run by onnxruntime (the CPU fast path of the predictors).

  * `graph`:   the ONNX graph of an MCL network from its (BatchNorm-folded) variables;
  * `bbfcn_graph`: the ONNX graph of a BB-FCN's whole constrained pipeline (crop -> points);
  * `int8`:    static int8 quantisation of such a graph (onnxruntime.quantization);
  * `session`: `OnnxNetwork`, an onnxruntime session over a graph, threads bound to this
               process's cores.

`lmjax.mcl.predictor.FacePredictor` runs its network through this package on CPU (`backend`),
as `lmjax.bbfcn.predictor.BBFCNPredictor` does its pipeline (`lmjax.bbfcn.fast_path`),
and `python -m lmjax.export` writes the graphs to files. Whole predictors as ONNX (the crop
inside the graph, converted from jax with jax2onnx) are exports of jax functions and live in
`lmjax.hlo_export` (`onnx_*`).
"""
