"""Photos as the server reads them, with Pillow alone: no torch, so that the page decodes and frames
with the server's own code, refusing what the server would and drawing on the frame the model saw.
"""
