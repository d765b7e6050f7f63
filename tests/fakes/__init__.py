"""Local fakes of the providers' APIs: they speak the vendor's HTTP and call back."""
