"""computer_vision_tasks."""
