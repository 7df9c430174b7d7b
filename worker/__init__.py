"""Workers: the job pipeline, the analyzers and the Celery tasks that carry out policy decisions."""
