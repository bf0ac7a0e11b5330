"""The submitting side: the YADTQ client and the line producer behind `yadtq produce`."""
