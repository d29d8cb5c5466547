"""What methods, tasks and the harness share, depending on none of them: the user-error type."""
