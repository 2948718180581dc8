"""Model families; importing this package registers every preset."""
