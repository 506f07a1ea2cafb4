"""NLP_glue_tasks."""
