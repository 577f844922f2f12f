"""Classical image processing, features and classic ML (floor 2, OpenCV/numpy-backed).

One module per family: filters, edges, canny (every step), morphology, histograms,
pyramids, hough, color, noise, interpolation, geometry (transforms, RANSAC, warps,
registration), calibration, features (Harris, SIFT, ORB, matching), hog, lbp,
felzenszwalb + selective_search, image_features + ml (scikit-learn models on image
features), clustering, cli_tools (the ``imgproc`` / ``calibrate`` commands). Images are
numpy HxW or HxWxC RGB, uint8 or float; argument checks live in ``checks``. See
docs/classic.md.
"""
