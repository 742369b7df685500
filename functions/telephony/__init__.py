"""Phone numbers and the PSTN leg: the `Dialer` Protocol, Twilio's REST API and the `dial_phone` entry
point (`telephony.py`). There is no offline dialer: tests use a local peer recording Twilio's calls."""
