"""Reports and progress: JSON and CSV reports (report), Prefect artifacts (artifacts), progress told to
whoever listens (progress), and what the run in this process is doing now (live), for interrupts.
"""
