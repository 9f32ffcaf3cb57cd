"""Networks and whole predictors as ONNX graphs, run by onnxruntime.

  * `graph`:          the ONNX graph of an MCL network from its (BatchNorm-folded) variables;
  * `int8`:           static int8 quantisation of a network graph (onnxruntime.quantization);
  * `session`:        `OnnxNetwork`, an onnxruntime session over a graph, threads bound to this
                      process's cores;
  * `convert`:        jax functions -> ONNX with jax2onnx (optional, the `onnx` extra);
  * `bbfcn_network`:  a BB-FCN network (backbone and branches) as ONNX through jax2onnx;
  * `whole`:          the crop, a network graph and the mapping to image pixels as one graph;
  * `predictor_file`: `lmjax.export --format=onnx --image_size=HxW`, with parity checks;
  * `runner`:         `OnnxPredictor`, such a file behind the image API (what
                      `python -m lmjax.evaluate --checkpoint=FILE.onnx` scores).

`lmjax.mcl.predictor.FacePredictor` runs its network through this package on CPU (`backend`),
and `python -m lmjax.export` writes the graphs to files.
"""
