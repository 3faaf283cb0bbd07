"""SKIN's one client for TorchServe's APIs: keys and their rotation, retries, what each failure means.

The page, ops, the load test, the benchmark and the launcher all talk to TorchServe through it. It
lives beside handler/ but is not packed into the .mar: only clients use it.
"""
