"""Services: the operations of scopegate, over a store. No HTTP here."""
