"""One search for everything: runs, steps and entities by what a person pastes
(an id, an actor, a customer, an error word). See index.py for the full-text
indexes the database keeps and query.py for the questions asked of them."""
