"""Running the system: embedded services, the Apache Kafka distribution, the Procfile supervisor."""
