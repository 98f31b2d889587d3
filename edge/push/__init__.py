"""Push notifications to registered devices that have no event stream open: Web Push,
APNs and FCM behind the publish API (`push` in edge.yaml; README "Push notifications").

    store.py      registered devices, in the backend
    presence.py   which devices have a stream open (for `only-if-offline`)
    dispatch.py   an event's deliveries: queue, workers, retries, unregistering
    endpoint.py   POST/GET/DELETE registrations, the VAPID public key
    providers/    webpush.py, apns.py, fcm.py: one notification to one device
"""
