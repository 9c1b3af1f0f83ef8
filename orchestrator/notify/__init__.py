"""Email notifications: composed from templates, sent over SMTP by RQ jobs with retries."""
