"""Classical image processing, features and classic ML (floor 2, OpenCV/numpy-backed).

One module per family: filters, edges, canny, morphology, histograms, pyramids, hough,
color, noise, interpolation, geometry, calibration, features, hog, lbp, selective_search,
ml, clustering. Images are numpy HxW or HxWxC (RGB), uint8 or float; see ``checks``.
"""
