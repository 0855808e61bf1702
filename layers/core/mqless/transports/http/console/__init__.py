"""The web console's static files (index.html, app.js, app.css), served by
mqless.transports.http.routes.console."""
