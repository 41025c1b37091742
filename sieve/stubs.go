package sieve


