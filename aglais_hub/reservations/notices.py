"""What a booking's owner is told as its end nears (pure): the page's banner, the
``api/notices`` endpoint and, through it, the banner the auth proxy shows in Zeppelin."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from .models import Booking
from .policy import iso


def notices(
    bookings: Iterable[Booking], now: datetime, warn: timedelta, grace: timedelta
) -> list[dict]:
    """One notice per booking that ends within ``warn``, or has ended and not stopped yet."""
    found = []
    for booking in bookings:
        name = booking.label
        stops = iso(booking.end + grace)
        if booking.state == "active" and booking.end - now <= warn:
            message = (
                f"Your booking {name} ends at {iso(booking.end)}. Save your work: "
                f"its server {booking.server_name} stops at {stops}."
            )
        elif (
            booking.state == "completed"
            and booking.stopped_at is None
            and now < booking.end + grace
        ):
            message = (
                f"Your booking {name} ended at {iso(booking.end)}. Save your work: "
                f"its server {booking.server_name} stops at {stops}."
            )
        else:
            continue
        found.append(
            {
                "booking": booking.id,
                "server_name": booking.server_name,
                "end": iso(booking.end),
                "stops_at": stops,
                "message": message,
            }
        )
    return found
