"""Running jobs past one process: a Ray channel for events, file and store transfer, the Ray executor.

Ray is imported only inside functions, so the engine still imports where Ray is not installed.
"""
