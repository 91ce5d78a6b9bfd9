"""Stand-in diving footage: dive numbers, annotation sampling, timing, drawing and encoding.

`aqa.data.synthesize.synthesize_videos` is the stage entry point; these modules are its parts.
"""
