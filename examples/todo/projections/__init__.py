"""The example's read models: `todo_lists`, `user_profiles` and `analytics`, in SQL."""
