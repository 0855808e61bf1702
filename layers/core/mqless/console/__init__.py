"""The web console's static files (index.html, app.js, app.css), served by
mqless.http.routes.console."""
