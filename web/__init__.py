"""The browser client (index.html, app.js, style.css), installed as package data ``rt_f2f.web`` so the call server
finds it in every kind of install; there is no Python here."""
