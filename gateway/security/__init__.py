"""The front door: authentication, grants, rate/body/header limits, security headers."""
