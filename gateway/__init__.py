"""The Anshim gateway service: radio in, authenticated events out to the control center."""
